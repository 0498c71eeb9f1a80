// Package metrics is the stack's metrics exporter: per tenant, the requests
// the router answered (counted from the line nginx sends per request over a
// unix socket only the router and the exporter share), and what the Docker
// engine says of the tenant's app, database and backup agent (replicas,
// health, restarts). It serves them in Prometheus' format, each series
// labelled with the stack and the tenant, with the Prometheus client
// library.
//
// It reads the engine's API through its socket, which it needs mounted:
// Docker has no read-only API, so the exporter's own code is what keeps to
// GET requests. It runs on the stack's monitoring network only, which no
// tenant's container is on.
package metrics

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Usage lists the metrics subcommands.
const Usage = `polls-agent metrics serve --stack PREFIX [--platform docker|swarm] [--listen :9100|unix:PATH]
                           [--router-socket PATH] [--engine unix:///var/run/docker.sock]
                           [--acme-state DIR]
                           serve the stack's metrics at /metrics
polls-agent metrics check [--url http://127.0.0.1:9100/metrics]
                           exit 1 unless the exporter answers (the health check)`

// Main runs a metrics subcommand.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("no metrics subcommand given:\n" + Usage)
	}
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("metrics serve", flag.ContinueOnError)
		stack := fs.String("stack", "", "the stack's Docker object prefix, e.g. polls-dev")
		platform := fs.String("platform", PlatformDocker, "docker or swarm")
		listen := fs.String("listen", ":9100", "address of /metrics: host:port, or unix:PATH")
		socket := fs.String("router-socket", "", "unix datagram socket for the router's lines (none: no router metrics)")
		engine := fs.String("engine", "unix:///var/run/docker.sock", "the Docker engine's socket (empty: no engine metrics)")
		acmeState := fs.String("acme-state", "", "the certificate companion's state directory, read-only (empty: no certificate metrics)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *stack == "" || (*platform != PlatformDocker && *platform != PlatformSwarm) {
			return errors.New("metrics serve: --stack is required and --platform is docker or swarm:\n" + Usage)
		}
		return Serve(ctx, Options{Stack: *stack, Platform: *platform, Listen: *listen, RouterSocket: *socket, Engine: *engine, ACMEState: *acmeState}, stdout)
	case "check":
		fs := flag.NewFlagSet("metrics check", flag.ContinueOnError)
		url := fs.String("url", "http://127.0.0.1:9100/metrics", "the exporter's metrics")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return check(ctx, *url)
	default:
		return fmt.Errorf("unknown metrics subcommand %q:\n%s", args[0], Usage)
	}
}

// Options configure the exporter.
type Options struct {
	Stack, Platform, Listen string
	// RouterSocket is where nginx sends its lines ("" for none); Engine
	// the engine's socket ("" for none).
	RouterSocket, Engine string
	// ACMEState is the certificate companion's state directory ("" for
	// none).
	ACMEState string
}

// Serve runs the exporter until ctx ends.
func Serve(ctx context.Context, o Options, stdout io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stdout, nil)).With("stack", o.Stack)
	logf := func(format string, args ...any) { log.Warn(fmt.Sprintf(format, args...)) }
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	if o.RouterSocket != "" {
		r := NewRouter(o.Stack)
		reg.MustRegister(r.Collectors()...)
		sock, err := ListenRouter(o.RouterSocket)
		if err != nil {
			return fmt.Errorf("listen for the router's lines on %s: %w", o.RouterSocket, err)
		}
		go func() { errs <- r.Serve(ctx, sock, logf) }()
	}
	if o.Engine != "" {
		e, err := NewEngine(o.Engine)
		if err != nil {
			return err
		}
		t := NewTenants(o.Stack, o.Platform, e)
		reg.MustRegister(t)
		go t.WatchRestarts(ctx, logf)
	}
	if o.ACMEState != "" {
		reg.MustRegister(NewCertificates(o.Stack, o.ACMEState))
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second,
		Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)})}
	l, err := listen(o.Listen)
	if err != nil {
		return fmt.Errorf("serve /metrics on %s: %w", o.Listen, err)
	}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("serve /metrics on %s: %w", o.Listen, err)
		}
	}()
	log.Info("serving metrics", "listen", o.Listen, "routerSocket", o.RouterSocket, "engine", o.Engine, "platform", o.Platform)
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	_ = srv.Shutdown(sctx)
	if o.RouterSocket != "" {
		_ = os.Remove(o.RouterSocket)
	}
	return err
}

// listen opens addr: host:port, or unix:PATH for a unix socket (which
// reaches across network namespaces: the benchmark runs the exporter in one
// of its own, as a container does).
func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

// check fails unless url answers 200.
func check(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the exporter does not answer: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the exporter answers %s", resp.Status)
	}
	return nil
}
