package metrics

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// nginxLine is a message as real nginx sends it with the rendered
// log_format (package nginx's TestRealNginxMetricsLines).
func nginxLine(tenant, status, took string) string {
	return `<190>Nov 30 06:33:47 polls: {"tenant":"` + tenant + `","status":"` + status + `","time":"` + took + `","sent":"314","received":"99"}`
}

// TestObserveCounts ensures each line counts one request for its tenant
// and status class, its time in the histogram and its bytes.
func TestObserveCounts(t *testing.T) {
	r := NewRouter("polls-dev")
	for _, l := range []string{
		nginxLine("thor", "200", "0.004"), nginxLine("thor", "200", "0.120"), nginxLine("thor", "302", "0.002"),
		nginxLine("potter", "502", "0.000"), nginxLine("_none", "404", "0.000"),
	} {
		if err := r.Observe([]byte(l)); err != nil {
			t.Fatalf("Observe(%s): %v", l, err)
		}
	}
	want := `
# HELP polls_router_requests_total Requests the router answered, by tenant and status class (1xx..5xx), its own 502 and 504 for an app that is down included.
# TYPE polls_router_requests_total counter
polls_router_requests_total{class="2xx",stack="polls-dev",tenant="thor"} 2
polls_router_requests_total{class="3xx",stack="polls-dev",tenant="thor"} 1
polls_router_requests_total{class="4xx",stack="polls-dev",tenant="_none"} 1
polls_router_requests_total{class="5xx",stack="polls-dev",tenant="potter"} 1
# HELP polls_router_response_bytes_total Bytes the router sent to clients, headers included, by tenant.
# TYPE polls_router_response_bytes_total counter
polls_router_response_bytes_total{stack="polls-dev",tenant="_none"} 314
polls_router_response_bytes_total{stack="polls-dev",tenant="potter"} 314
polls_router_response_bytes_total{stack="polls-dev",tenant="thor"} 942
`
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.Collectors()...)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "polls_router_requests_total", "polls_router_response_bytes_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(r.duration, "polls_router_request_duration_seconds"); n != 3 {
		t.Errorf("%d latency histograms; want one per tenant (3)", n)
	}
	if got := testutil.ToFloat64(r.invalid); got != 0 {
		t.Errorf("%v invalid lines; want 0", got)
	}
}

// TestObserveRefuses ensures a line that is not nginx's, or names no
// possible tenant, counts nothing but an invalid line.
func TestObserveRefuses(t *testing.T) {
	r := NewRouter("polls-dev")
	for _, l := range []string{
		"",
		`{"tenant":"thor","status":"200"}`,
		`<190>Nov 30 06:33:47 other: {"tenant":"thor","status":"200"}`,
		nginxLine("Thor", "200", "0.1"),
		nginxLine(`thor\",\"x`, "200", "0.1"),
		nginxLine("thor", "2000", "0.1"),
		nginxLine("thor", "", "0.1"),
		`<190>Nov 30 06:33:47 polls: {"tenant":"thor",`,
	} {
		if err := r.Observe([]byte(l)); err == nil {
			t.Errorf("Observe(%q) accepted it", l)
		}
	}
	if n := testutil.CollectAndCount(r.requests); n != 0 {
		t.Errorf("%d request series after refused lines; want none", n)
	}
	if got := testutil.ToFloat64(r.invalid); got != 8 {
		t.Errorf("%v invalid lines; want 8", got)
	}
}

// TestRouterSocket ensures lines sent to the socket as nginx sends them (a
// datagram each) are counted, and that the socket can be written by others.
func TestRouterSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nginx.sock")
	sock, err := ListenRouter(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o666 {
		t.Errorf("socket mode %v, %v; want 0666, for nginx's workers", fi.Mode(), err)
	}
	r := NewRouter("polls-dev")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, sock, t.Logf) }()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	// A first line wakes the exporter; a burst then waits in the queue
	// while it batches.
	for i := range 25 {
		if _, err := c.Write([]byte(nginxLine("thor", "200", "0.010"))); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(r.requests.WithLabelValues("thor", "2xx")) != 25 {
		if time.Now().After(deadline) {
			t.Fatalf("%v requests counted; want 25", testutil.ToFloat64(r.requests.WithLabelValues("thor", "2xx")))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
