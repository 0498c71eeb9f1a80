package nginx_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polls-tenants/polls/app/pgtest"
	. "github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/nginx/nginxtest"
)

// BenchmarkMetricsOverhead measures the router's latency with monitoring
// off and on, in one run (make bench-monitoring): two real nginx, rendered
// without and with Metrics, in front of the same upstreams, the second
// sending its lines to the real exporter (polls-agent metrics, built from
// ../agent). Requests alternate between the two, one at a time over
// keep-alive connections, so both see the same load on the host. Two
// upstreams: the real app's poll list (on PostgreSQL), what a user waits
// for, and a fixed 2 KiB page, where nginx's own work is all there is. It
// reports each side's median and 90th percentile and the on/off ratio of
// the medians, and checks that the exporter counted every request.
func BenchmarkMetricsOverhead(b *testing.B) {
	nginxtest.Binary(b)
	pg := pgtest.Start(b)
	bin := buildApp(b)
	dbURL := pg.CreateDatabase(b, "thor")
	pwFile := filepath.Join(b.TempDir(), "admin-password")
	if err := os.WriteFile(pwFile, []byte("secret-thor\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	env := append(os.Environ(), "TENANT=thor", "DATABASE_URL="+dbURL, "ADMIN_PASSWORD_FILE="+pwFile)
	migrate := exec.Command(bin, "migrate", "-createsuperuser")
	migrate.Env = env
	if out, err := migrate.CombinedOutput(); err != nil {
		b.Fatalf("migrate: %v\n%s", err, out)
	}
	app := "127.0.0.1:" + strconv.Itoa(nginxtest.FreePort(b))
	serve := exec.Command(bin, "serve")
	serve.Env = append(env, "LISTEN_ADDR="+app, "ALLOWED_HOSTS=thor.polls.local")
	if err := serve.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = serve.Process.Signal(os.Interrupt); _, _ = serve.Process.Wait() })
	waitReady(b, "http://"+app+"/readyz")
	page := strings.Repeat("x", 2048)
	static := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, page) }))
	b.Cleanup(static.Close)
	servers := []Server{
		{Name: "thor", Hosts: []string{"thor.polls.local"}, Upstream: app},
		{Name: "static", Hosts: []string{"static.polls.local"}, Upstream: strings.TrimPrefix(static.URL, "http://")},
	}

	socket := filepath.Join(b.TempDir(), "nginx.sock")
	exporter, asContainer := startExporter(b, socket)
	if !asContainer {
		fmt.Println("the exporter runs with the host's unix datagram queue (not root, or no unshare): lines nginx sends in a burst may be dropped where the stack's container would queue them")
	}
	off := "127.0.0.1:" + strconv.Itoa(nginxtest.FreePort(b))
	on := "127.0.0.1:" + strconv.Itoa(nginxtest.FreePort(b))
	for _, c := range []Config{
		{Resolver: "127.0.0.1", Listen: off, Servers: servers},
		{Resolver: "127.0.0.1", Listen: on, Servers: servers, Metrics: &Metrics{Socket: socket, NoTenant: "_none"}},
	} {
		conf, err := Render(c)
		if err != nil {
			b.Fatal(err)
		}
		nginxtest.Start(b, conf, c.Listen)
	}

	const n = 3000
	sent := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, host := range []string{"thor.polls.local", "static.polls.local"} {
			offLat, onLat := alternate(b, "http://"+off, "http://"+on, host, n)
			sent += warm + n
			mOff, mOn := pct(offLat, 50), pct(onLat, 50)
			tenant := strings.TrimSuffix(host, ".polls.local")
			b.ReportMetric(float64(mOff.Microseconds()), tenant+"-off-median-µs")
			b.ReportMetric(float64(mOn.Microseconds()), tenant+"-on-median-µs")
			b.ReportMetric(float64(mOn)/float64(mOff), tenant+"-median-ratio")
			fmt.Printf("router latency, upstream %-6s monitoring off: median %v, p90 %v; on: median %v, p90 %v; ratio on/off: median %.3f, p90 %.3f (%d requests each, alternating)\n",
				tenant, mOff, pct(offLat, 90), mOn, pct(onLat, 90), float64(mOn)/float64(mOff), float64(pct(onLat, 90))/float64(pct(offLat, 90)), n)
		}
	}
	b.StopTimer()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := counted(b, exporter)
		if got == sent {
			fmt.Printf("the exporter counted all %d requests sent through the router with monitoring on\n", got)
			break
		}
		if time.Now().After(deadline) {
			if asContainer {
				b.Errorf("the exporter counted %d requests; %d were sent with monitoring on", got, sent)
			} else {
				fmt.Printf("the exporter counted %d of the %d requests sent with monitoring on\n", got, sent)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// warm is how many requests alternate sends each side before measuring.
const warm = 50

// alternate sends n requests to each base, one at a time, alternating, and
// returns each side's latencies.
func alternate(tb testing.TB, a, b, host string, n int) (la, lb []time.Duration) {
	tb.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}, Timeout: 10 * time.Second}
	one := func(base string) time.Duration {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, base+"/", nil)
		req.Host = host
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			tb.Fatalf("GET %s (Host %s): %v", base, host, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != http.StatusOK {
			tb.Fatalf("GET %s (Host %s) = %d", base, host, resp.StatusCode)
		}
		return d
	}
	// Warm both: connections, the app's caches.
	for range warm {
		one(a)
		one(b)
	}
	for i := range n {
		if i%2 == 0 {
			la, lb = append(la, one(a)), append(lb, one(b))
		} else {
			lb, la = append(lb, one(b)), append(la, one(a))
		}
	}
	return la, lb
}

// pct returns the p-th percentile of the latencies.
func pct(l []time.Duration, p int) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	return s[len(s)*p/100]
}

// startExporter builds polls-agent from ../agent and serves the router's
// metrics from socket, in a network namespace of its own with the queue
// the stack's exporter container gets (net.unix.max_dgram_qlen, see
// package monitoring) where the benchmark may make one (as root, with
// unshare); it returns a client of its /metrics and whether it runs so.
func startExporter(tb testing.TB, socket string) (*http.Client, bool) {
	tb.Helper()
	dir := tb.TempDir()
	bin := filepath.Join(dir, "polls-agent")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join("..", "agent")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("build polls-agent: %v\n%s", err, out)
	}
	listen := filepath.Join(dir, "metrics.sock")
	serve := []string{bin, "metrics", "serve", "--stack", "bench", "--router-socket", socket, "--engine=", "--listen", "unix:" + listen}
	var cmd *exec.Cmd
	_, err := exec.LookPath("unshare")
	asContainer := err == nil && os.Geteuid() == 0
	if asContainer {
		cmd = exec.Command("unshare", append([]string{"--net", "sh", "-ec", `sysctl -qw net.unix.max_dgram_qlen=1024; exec "$@"`, "sh"}, serve...)...)
	} else {
		cmd = exec.Command(serve[0], serve[1:]...)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _, _ = cmd.Process.Wait() })
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", listen)
	}}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get("http://exporter/metrics")
		if err == nil {
			resp.Body.Close()
			return client, asContainer
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the exporter does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// counted sums the exporter's polls_router_requests_total.
func counted(tb testing.TB, client *http.Client) int {
	tb.Helper()
	resp, err := client.Get("http://exporter/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "polls_router_requests_total{") {
			v, _ := strconv.ParseFloat(l[strings.LastIndex(l, " ")+1:], 64)
			total += v
		}
	}
	return int(total)
}
