package nginx_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/nginx/nginxtest"
)

// metricsLine is what nginx sends the exporter per request.
type metricsLine struct {
	Tenant, Status, Time, Sent, Received string
}

// TestRealNginxMetricsLines ensures real nginx with the rendered config
// sends one line per request to the metrics socket, naming the tenant whose
// server answered (the default server's for unknown hosts), with the status
// the client got: the router's own 502 for a tenant whose app is down too.
func TestRealNginxMetricsLines(t *testing.T) {
	nginxtest.Binary(t)
	socket := filepath.Join(t.TempDir(), "nginx.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello")) }))
	defer app.Close()
	down := "127.0.0.1:" + strconv.Itoa(nginxtest.FreePort(t))

	listen := "127.0.0.1:" + strconv.Itoa(nginxtest.FreePort(t))
	conf, err := Render(Config{Resolver: "127.0.0.1", Listen: listen, Metrics: &Metrics{Socket: socket, NoTenant: "_none"}, Servers: []Server{
		{Name: "thor", Hosts: []string{"thor.polls.local"}, Upstream: strings.TrimPrefix(app.URL, "http://")},
		{Name: "potter", Hosts: []string{"potter.polls.local"}, Upstream: down},
	}})
	if err != nil {
		t.Fatal(err)
	}
	nginxtest.Start(t, conf, listen)

	// A new connection per request: Go's transport silently sends a GET
	// again when a kept-alive connection closes under it, and nginx would
	// log both (CI once saw a third potter line where the test sent two).
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	sent := map[string]int{"thor.polls.local": 3, "potter.polls.local": 2, "nobody.polls.local": 1}
	for host, n := range sent {
		for range n {
			getWith(t, client, "http://"+listen, host, "/")
		}
	}
	got := map[string]int{}
	buf := make([]byte, 4096)
	// Six lines are due; any more come within moments and are counted too,
	// so that a failure shows every line nginx sent.
	for i := 0; ; i++ {
		wait := 5 * time.Second
		if i >= 6 {
			wait = 300 * time.Millisecond
		}
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		n, err := conn.Read(buf)
		if err != nil && i >= 6 {
			break
		}
		if err != nil {
			t.Fatalf("after %d lines: %v (got %v)", i, err, got)
		}
		msg := string(buf[:n])
		// <190>Mon  2 15:04:05 polls: {...}: syslog, without a host name.
		_, body, ok := strings.Cut(msg, " polls: ")
		if !strings.HasPrefix(msg, "<") || !ok {
			t.Fatalf("line %q is not syslog tagged polls", msg)
		}
		var l metricsLine
		if err := json.Unmarshal([]byte(body), &l); err != nil {
			t.Fatalf("line %q: %v", msg, err)
		}
		if _, err := strconv.ParseFloat(l.Time, 64); err != nil || l.Sent == "" || l.Received == "" {
			t.Errorf("line %q lacks the request time or sizes", msg)
		}
		got[l.Tenant+" "+l.Status]++
	}
	want := map[string]int{"thor 200": 3, "potter 502": 2, "_none 404": 1}
	if len(got) != len(want) {
		t.Errorf("lines by tenant and status = %v; want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("lines by tenant and status = %v; want %v", got, want)
			break
		}
	}
}
