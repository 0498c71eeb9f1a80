package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Router counts the router's requests per tenant from the lines nginx sends
// (package nginx renders the format): one syslog message per request,
// `<PRI>Mon  2 15:04:05 polls: {"tenant":...,"status":...,...}`.
type Router struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	sent     *prometheus.CounterVec
	received *prometheus.CounterVec
	invalid  prometheus.Counter
}

// Buckets of the request time, in seconds: an app answers in milliseconds,
// and nginx gives up on an upstream after 60 s.
var Buckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// NewRouter makes the router's metrics for stack.
func NewRouter(stack string) *Router {
	stackLabel := prometheus.Labels{"stack": stack}
	return &Router{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "polls_router_requests_total", ConstLabels: stackLabel,
			Help: "Requests the router answered, by tenant and status class (1xx..5xx), its own 502 and 504 for an app that is down included.",
		}, []string{"tenant", "class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "polls_router_request_duration_seconds", ConstLabels: stackLabel, Buckets: Buckets,
			Help: "Time from the request's first byte to the response's last, as the router saw it, by tenant.",
		}, []string{"tenant"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "polls_router_response_bytes_total", ConstLabels: stackLabel,
			Help: "Bytes the router sent to clients, headers included, by tenant.",
		}, []string{"tenant"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "polls_router_request_bytes_total", ConstLabels: stackLabel,
			Help: "Bytes of requests the router received, headers included, by tenant.",
		}, []string{"tenant"}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "polls_router_lines_invalid_total", ConstLabels: stackLabel,
			Help: "Lines from the router that were not understood (none is expected).",
		}),
	}
}

// Collectors are the metrics to register.
func (r *Router) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.requests, r.duration, r.sent, r.received, r.invalid}
}

// line is a request as nginx describes it; every value is a string, as
// nginx's escape=json writes variables.
type line struct {
	Tenant   string `json:"tenant"`
	Status   string `json:"status"`
	Time     string `json:"time"`
	Sent     string `json:"sent"`
	Received string `json:"received"`
}

// tenantLabel is a tenant's name (a DNS label) or the default server's
// "_none".
var tenantLabel = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?|_[a-z0-9_]{1,30})$`)

// Observe records one message from the router; a message it does not
// understand is counted as invalid and returned as an error.
func (r *Router) Observe(msg []byte) error {
	l, err := parse(msg)
	if err != nil {
		r.invalid.Inc()
		return err
	}
	r.requests.WithLabelValues(l.Tenant, l.Status[:1]+"xx").Inc()
	if s, err := strconv.ParseFloat(l.Time, 64); err == nil {
		r.duration.WithLabelValues(l.Tenant).Observe(s)
	}
	if n, err := strconv.ParseFloat(l.Sent, 64); err == nil {
		r.sent.WithLabelValues(l.Tenant).Add(n)
	}
	if n, err := strconv.ParseFloat(l.Received, 64); err == nil {
		r.received.WithLabelValues(l.Tenant).Add(n)
	}
	return nil
}

var tag = []byte(" polls: ")

func parse(msg []byte) (line, error) {
	i := bytes.Index(msg, tag)
	if len(msg) == 0 || msg[0] != '<' || i < 0 {
		return line{}, fmt.Errorf("not a syslog message tagged polls: %.80q", msg)
	}
	var l line
	if err := json.Unmarshal(bytes.TrimSpace(msg[i+len(tag):]), &l); err != nil {
		return line{}, fmt.Errorf("not a request line: %w: %.80q", err, msg)
	}
	if !tenantLabel.MatchString(l.Tenant) {
		return line{}, fmt.Errorf("tenant %q is not a tenant's name", l.Tenant)
	}
	if len(l.Status) != 3 || l.Status[0] < '1' || l.Status[0] > '5' {
		return line{}, fmt.Errorf("status %q is not an HTTP status", l.Status)
	}
	return l, nil
}

// Socket is the unix datagram socket nginx sends its lines to.
type Socket struct {
	fd   int
	path string
}

// ListenRouter opens the unix datagram socket at path for nginx's lines,
// replacing a stale one, writable by nginx's workers (which run as their
// own user). Its receive buffer is made as large as the kernel allows.
//
// It is a plain blocking socket, not one of package net's: those are
// watched by the runtime's poller, which the kernel then wakes for every
// line, that is for every request, and on a busy host that costs the
// router's requests more than reading the line does.
func ListenRouter(path string) (*Socket, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	s := &Socket{fd: fd, path: path}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		s.Close()
		return nil, os.NewSyscallError("bind", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		s.Close()
		return nil, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
	// Blocking reads give up after a second, to notice a stop.
	tv := syscall.NsecToTimeval(time.Second.Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		s.Close()
		return nil, os.NewSyscallError("setsockopt", err)
	}
	return s, nil
}

// Close closes the socket.
func (s *Socket) Close() error { return syscall.Close(s.fd) }

// read reads one line; wait says whether to wait (up to a second) for one.
// It returns 0 when there is none.
func (s *Socket) read(buf []byte, wait bool) (int, error) {
	flags := 0
	if !wait {
		flags = syscall.MSG_DONTWAIT
	}
	for {
		n, _, err := syscall.Recvfrom(s.fd, buf, flags)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, nil
		case err != nil:
			return 0, os.NewSyscallError("recvfrom", err)
		}
		return n, nil
	}
}

// Batch is how long the exporter lets the router's lines gather in the
// socket's queue while requests keep coming: it then wakes once per Batch,
// not once per request, which keeps its work off the router's requests on
// a busy host. The queue holds far more than a Batch of requests (the
// exporter's container raises net.unix.max_dgram_qlen for it).
const Batch = 10 * time.Millisecond

// Serve reads the router's lines from s until ctx ends, and closes s.
func (r *Router) Serve(ctx context.Context, s *Socket, logf func(string, ...any)) error {
	defer s.Close()
	buf := make([]byte, 64<<10)
	warned := 0
	observe := func(n int) {
		if err := r.Observe(buf[:n]); err != nil && warned < 10 {
			// A handful are enough to see what is wrong.
			warned++
			logf("router line: %v", err)
		}
	}
	for ctx.Err() == nil {
		// Idle: wait for a line.
		n, err := s.read(buf, true)
		if err != nil {
			return fmt.Errorf("read the router's lines: %w", err)
		}
		if n == 0 {
			continue
		}
		observe(n)
		// Busy: take what is queued, let more gather, until none came.
		for got := true; got && ctx.Err() == nil; {
			got = false
			for {
				n, err := s.read(buf, false)
				if err != nil {
					return fmt.Errorf("read the router's lines: %w", err)
				}
				if n == 0 {
					break
				}
				got = true
				observe(n)
			}
			if got {
				select {
				case <-ctx.Done():
				case <-time.After(Batch):
				}
			}
		}
	}
	return nil
}
