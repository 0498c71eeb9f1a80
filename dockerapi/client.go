// Package dockerapi is the program's own view of the Docker engine, for
// what the docker provider cannot do: list the engine's networks (to plan
// tenant subnets before anything is created), place databases on Swarm
// nodes, and watch a container or a service come up (to gate on health as
// soon as it is reached, and to fail at once, with the reason, when it
// exits, turns unhealthy, is rolled back or cannot be placed).
//
// It speaks to the engine through the official client
// (github.com/moby/moby/client), which negotiates the API version with the
// engine: requests are made at the engine's own version (1.41 on Docker
// 20.10) and read with the client's types, so an engine upgrade cannot
// change what an unversioned path answers. What is ours is the waiting and
// reaching an engine over ssh through `docker system dial-stdio` on the
// remote host, as the docker CLI and the provider do. It imports no Pulumi.
package dockerapi

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/moby/moby/client"
)

// DefaultHost is the engine used when neither the stack nor DOCKER_HOST
// names one.
const DefaultHost = "unix:///var/run/docker.sock"

// Client talks to one Docker engine.
type Client struct {
	api  *client.Client
	host string
	// since is when the client was made: the start of the program's run.
	// WaitService counts the tasks that failed after it (see there).
	since time.Time
}

// New returns a client of host ("" means DOCKER_HOST, else the local
// socket): unix://path, tcp://host:port (with TLS from DOCKER_CERT_PATH,
// else ~/.docker, when DOCKER_TLS_VERIFY is set or the scheme is https), or
// ssh://[user@]host[:port]. sshOpts are extra ssh arguments for an ssh
// host, as the provider's sshOpts (say `-F` and a config file); the user's
// ~/.ssh/config applies otherwise.
//
// The API version is negotiated with the engine on the first request.
func New(host string, sshOpts ...string) (*Client, error) {
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		host = DefaultHost
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("docker host %q: %w", host, err)
	}
	var opts []client.Opt
	switch u.Scheme {
	case "unix":
		opts = append(opts, client.WithHost(host))
	case "tcp", "http", "https":
		opts = append(opts, client.WithHost("tcp://"+u.Host+u.Path))
		if u.Scheme == "https" || os.Getenv("DOCKER_TLS_VERIFY") != "" {
			dir := os.Getenv("DOCKER_CERT_PATH")
			if dir == "" {
				home, _ := os.UserHomeDir()
				dir = filepath.Join(home, ".docker")
			}
			opts = append(opts, client.WithTLSClientConfig(
				filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")))
		}
	case "ssh":
		// The transport is our own so that no HTTP proxy from the
		// environment applies: every connection is a new ssh session. It
		// has its dialer before the client clones it: cloning a transport
		// without one makes Go set it up for HTTP/2 over TLS, and the
		// client would then take the engine for a TLS one.
		dial := sshDialer(u, sshOpts)
		opts = append(opts, client.WithHost("http://"+client.DummyHost),
			client.WithHTTPClient(&http.Client{
				Transport:     &http.Transport{DialContext: dial, MaxIdleConns: 6, IdleConnTimeout: 30 * time.Second},
				CheckRedirect: client.CheckRedirect,
			}),
			client.WithDialContext(dial))
	default:
		return nil, fmt.Errorf("docker host %q: scheme %q is not one of unix, tcp, ssh", host, u.Scheme)
	}
	api, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker host %s: %w", host, err)
	}
	return &Client{api: api, host: host, since: time.Now()}, nil
}

// Host returns the engine's address as given.
func (c *Client) Host() string { return c.host }

// Close closes the client's idle connections (over ssh: ends their ssh
// sessions).
func (c *Client) Close() error { return c.api.Close() }
