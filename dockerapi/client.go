// Package dockerapi is the program's own small client of the Docker Engine
// API, for the two things the docker provider cannot do: list the engine's
// networks (to plan tenant subnets before anything is created) and watch a
// container come up (to gate on health as soon as it is reached, and to
// fail at once, with the reason, when it exits or turns unhealthy).
//
// It speaks plain HTTP over the same host the provider uses: a unix socket,
// tcp (with TLS from DOCKER_CERT_PATH when DOCKER_TLS_VERIFY is set), or ssh
// through `docker system dial-stdio` on the remote host, as the docker CLI
// does. It imports no Pulumi.
package dockerapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// DefaultHost is the engine used when neither the stack nor DOCKER_HOST
// names one.
const DefaultHost = "unix:///var/run/docker.sock"

// Client talks to one Docker engine.
type Client struct {
	http *http.Client
	base string
	host string
}

// New returns a client of host ("" means DOCKER_HOST, else the local socket).
func New(host string) (*Client, error) {
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
	tr := &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
	base := "http://docker"
	switch u.Scheme {
	case "unix":
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", u.Path)
		}
	case "tcp", "http", "https":
		scheme := "http"
		if u.Scheme == "https" || os.Getenv("DOCKER_TLS_VERIFY") != "" {
			scheme = "https"
			cfg, err := tlsConfig()
			if err != nil {
				return nil, fmt.Errorf("docker host %s: %w", host, err)
			}
			tr.TLSClientConfig = cfg
		}
		base = scheme + "://" + u.Host
	case "ssh":
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return dialSSH(ctx, u) }
	default:
		return nil, fmt.Errorf("docker host %q: scheme %q is not one of unix, tcp, ssh", host, u.Scheme)
	}
	return &Client{http: &http.Client{Transport: tr}, base: base, host: host}, nil
}

// Host returns the engine's address as given.
func (c *Client) Host() string { return c.host }

func tlsConfig() (*tls.Config, error) {
	dir := os.Getenv("DOCKER_CERT_PATH")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".docker")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, fmt.Errorf("TLS client certificate in %s: %w", dir, err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("TLS CA in %s: %w", dir, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// dialSSH connects to the remote engine's socket through ssh and the remote
// docker CLI, like `docker -H ssh://…`.
func dialSSH(ctx context.Context, u *url.URL) (net.Conn, error) {
	args := []string{"-o", "BatchMode=yes"}
	if u.Port() != "" {
		args = append(args, "-p", u.Port())
	}
	target := u.Hostname()
	if u.User != nil {
		target = u.User.Username() + "@" + target
	}
	args = append(args, "--", target, "docker", "system", "dial-stdio")
	cmd := exec.CommandContext(context.WithoutCancel(ctx), "ssh", args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ssh to %s: %w", target, err)
	}
	return &cmdConn{cmd: cmd, in: in, out: out}, nil
}

// cmdConn is a net.Conn over a command's stdin and stdout.
type cmdConn struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out io.ReadCloser
}

func (c *cmdConn) Read(b []byte) (int, error)  { return c.out.Read(b) }
func (c *cmdConn) Write(b []byte) (int, error) { return c.in.Write(b) }
func (c *cmdConn) Close() error {
	_ = c.in.Close()
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	return nil
}
func (c *cmdConn) LocalAddr() net.Addr              { return dummyAddr{} }
func (c *cmdConn) RemoteAddr() net.Addr             { return dummyAddr{} }
func (c *cmdConn) SetDeadline(time.Time) error      { return nil }
func (c *cmdConn) SetReadDeadline(time.Time) error  { return nil }
func (c *cmdConn) SetWriteDeadline(time.Time) error { return nil }
func (dummyAddr) Network() string                   { return "ssh" }
func (dummyAddr) String() string                    { return "ssh" }

// dummyAddr is the address of a connection through ssh: it has none.
type dummyAddr struct{}

// url returns the engine URL of path with query q.
func (c *Client) url(path string, q url.Values) string {
	if len(q) == 0 {
		return c.base + path
	}
	return c.base + path + "?" + q.Encode()
}

// do sends a request and decodes a JSON answer into out (nil: discard).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body any, out any) error {
	return c.doWith(ctx, method, path, q, nil, body, out)
}

// doWith is do with extra request headers.
func (c *Client) doWith(ctx context.Context, method, path string, q url.Values, header http.Header, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("docker engine at %s: %w", c.host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct{ Message string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return &Error{Status: resp.StatusCode, Message: e.Message}
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Error is an error answer of the engine.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("docker engine: %s (HTTP %d)", e.Message, e.Status)
}
