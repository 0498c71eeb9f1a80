package nginx_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polls-tenants/polls/app/pgtest"
	. "github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/nginx/nginxtest"
)

// routing is real nginx, rendered by Render, in front of two real app
// processes with their own databases, and an echo server that shows what
// nginx forwards.
type routing struct {
	nginx  string // base URL of nginx
	direct map[string]string
	apps   map[string]*exec.Cmd
	echo   chan http.Header
}

// startRouting builds and starts everything; it skips when nginx or
// PostgreSQL is missing.
func startRouting(tb testing.TB) *routing {
	tb.Helper()
	nginxtest.Binary(tb)
	pg := pgtest.Start(tb)
	bin := buildApp(tb)
	r := &routing{direct: map[string]string{}, apps: map[string]*exec.Cmd{}, echo: make(chan http.Header, 16)}

	var servers []Server
	for _, tenant := range []string{"thor", "potter"} {
		dbURL := pg.CreateDatabase(tb, tenant)
		pwFile := filepath.Join(tb.TempDir(), "admin-password")
		if err := os.WriteFile(pwFile, []byte("secret-"+tenant+"\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
		env := append(os.Environ(), "TENANT="+tenant, "DATABASE_URL="+dbURL, "ADMIN_PASSWORD_FILE="+pwFile)
		migrate := exec.Command(bin, "migrate", "-createsuperuser")
		migrate.Env = env
		if out, err := migrate.CombinedOutput(); err != nil {
			tb.Fatalf("migrate %s: %v\n%s", tenant, err, out)
		}
		addr := "127.0.0.1:" + strconv.Itoa(nginxtest.FreePort(tb))
		r.apps[tenant] = serveApp(tb, bin, append(env, "LISTEN_ADDR="+addr, "ALLOWED_HOSTS="+tenant+".polls.local"), "http://"+addr+"/readyz")
		r.direct[tenant] = "http://" + addr
		servers = append(servers, Server{Name: tenant, Hosts: []string{tenant + ".polls.local"}, Upstream: addr})
	}
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h := req.Header.Clone()
		h.Set("Host", req.Host)
		r.echo <- h
	}))
	tb.Cleanup(echo.Close)
	servers = append(servers, Server{Name: "echo", Hosts: []string{"echo.polls.local"}, Upstream: strings.TrimPrefix(echo.URL, "http://")})

	listen := "127.0.0.1:" + strconv.Itoa(nginxtest.FreePort(tb))
	conf, err := Render(Config{Servers: servers, Resolver: "127.0.0.1", Listen: listen})
	if err != nil {
		tb.Fatal(err)
	}
	nginxtest.Start(tb, conf, listen)
	r.nginx = "http://" + listen
	return r
}

// buildApp builds the app binary from ../app.
func buildApp(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "polls")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join("..", "app")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build app: %v\n%s", err, out)
	}
	return bin
}

// serveApp starts `polls serve` with env, stops it when tb ends, and
// returns once probe answers 200.
func serveApp(tb testing.TB, bin string, env []string, probe string) *exec.Cmd {
	tb.Helper()
	serve := exec.Command(bin, "serve")
	serve.Env = env
	if err := serve.Start(); err != nil {
		tb.Fatalf("serve: %v", err)
	}
	tb.Cleanup(func() {
		_ = serve.Process.Signal(os.Interrupt)
		_, _ = serve.Process.Wait()
	})
	waitReady(tb, probe)
	return serve
}

func waitReady(tb testing.TB, url string) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not ready: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get sends GET base+path with the given Host and returns status and body.
func get(tb testing.TB, base, host, path string) (int, string) {
	tb.Helper()
	return getWith(tb, http.DefaultClient, base, host, path)
}

// getWith is get through client.
func getWith(tb testing.TB, client *http.Client, base, host, path string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("GET %s (Host %s): %v", base+path, host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestRealNginxRouting ensures real nginx with the rendered config sends each
// tenant's host to its own app, answers 404 to unknown hosts, passes the
// forwarded headers, keeps serving one tenant while another is down, and
// that an app refuses the other tenant's Host.
func TestRealNginxRouting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, two apps and nginx: skipped with -short")
	}
	r := startRouting(t)

	for _, tenant := range []string{"thor", "potter"} {
		code, body := get(t, r.nginx, tenant+".polls.local", "/")
		other := map[string]string{"thor": "potter", "potter": "thor"}[tenant]
		if code != http.StatusOK || !strings.Contains(body, tenant) || strings.Contains(body, other) {
			t.Errorf("GET / Host %s.polls.local through nginx = %d, body mentions %s: %v, %s: %v; want 200 from %s's app only",
				tenant, code, tenant, strings.Contains(body, tenant), other, strings.Contains(body, other), tenant)
		}
	}

	for _, host := range []string{"nobody.polls.local", "polls.local", "127.0.0.1", "thor.polls.local.evil.example"} {
		if code, _ := get(t, r.nginx, host, "/"); code != http.StatusNotFound {
			t.Errorf("GET / Host %s through nginx = %d; want 404 from the default server", host, code)
		}
	}

	// The Host reaches the app as the client sent it, port included.
	echoHost := "echo.polls.local:" + r.port()
	req, _ := http.NewRequest(http.MethodGet, r.nginx+"/x", nil)
	req.Host = echoHost
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case h := <-r.echo:
		want := map[string]string{
			"Host": echoHost, "X-Real-Ip": "127.0.0.1",
			"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "http",
		}
		for k, v := range want {
			if got := h.Get(k); got != v {
				t.Errorf("upstream saw %s = %q; want %q", k, got, v)
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("echo upstream got no request")
	}

	if code, _ := get(t, r.direct["thor"], "potter.polls.local", "/"); code != http.StatusBadRequest {
		t.Errorf("thor's app answered Host potter.polls.local with %d; want 400", code)
	}

	// Stop potter's app: nginx answers 502 for potter and keeps serving thor.
	_ = r.apps["potter"].Process.Signal(os.Interrupt)
	_, _ = r.apps["potter"].Process.Wait()
	if code, _ := get(t, r.nginx, "potter.polls.local", "/"); code != http.StatusBadGateway {
		t.Errorf("potter down: GET through nginx = %d; want 502", code)
	}
	if code, _ := get(t, r.nginx, "thor.polls.local", "/"); code != http.StatusOK {
		t.Errorf("potter down: thor through nginx = %d; want 200", code)
	}
}

// port returns the port nginx listens on.
func (r *routing) port() string { return r.nginx[strings.LastIndex(r.nginx, ":")+1:] }

// TestRealNginxCrossOrigin ensures that through real nginx on a non-default
// port, an admin's form posts from the site's own pages are served, even
// from a browser that sends only Origin (which carries the port), while
// posts from another site's page, another tenant's included, are refused.
func TestRealNginxCrossOrigin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, two apps and nginx: skipped with -short")
	}
	r := startRouting(t)
	site := "thor.polls.local:" + r.port()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// post sends a form as a browser does, Host as typed in its address bar.
	post := func(path string, form url.Values, header ...string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, r.nginx+path, strings.NewReader(form.Encode()))
		req.Host = site
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST %s (Host %s): %v", path, site, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	own := "http://" + site
	if code := post("/admin/login", url.Values{"username": {"admin"}, "password": {"secret-thor"}}, "Origin", own); code != http.StatusSeeOther {
		t.Fatalf("admin login through nginx with Origin %s = %d; want 303", own, code)
	}
	for name, header := range map[string][]string{
		"Origin " + own:              {"Origin", own},
		"Sec-Fetch-Site same-origin": {"Sec-Fetch-Site", "same-origin", "Origin", own},
	} {
		if code := post("/admin/polls", url.Values{"question": {"Served " + name + "?"}}, header...); code != http.StatusSeeOther {
			t.Errorf("admin post through nginx with %s = %d; want 303", name, code)
		}
	}
	for name, header := range map[string][]string{
		"Origin http://evil.example":  {"Origin", "http://evil.example"},
		"Origin of tenant potter":     {"Origin", "http://potter.polls.local:" + r.port()},
		"Sec-Fetch-Site cross-site":   {"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"},
		"Origin without nginx's port": {"Origin", "http://thor.polls.local"},
	} {
		if code := post("/admin/polls", url.Values{"question": {"Forged?"}}, header...); code != http.StatusForbidden {
			t.Errorf("admin post through nginx with %s = %d; want 403", name, code)
		}
	}
	_, body := get(t, r.nginx, site, "/")
	if !strings.Contains(body, "Served Origin "+own+"?") || !strings.Contains(body, "Served Sec-Fetch-Site same-origin?") || strings.Contains(body, "Forged?") {
		t.Errorf("thor's polls after the posts; want both served ones and no forged one:\n%s", body)
	}
}

// BenchmarkNginxOverhead loads one tenant's poll list directly and through
// nginx, the same number of requests at the same concurrency, and reports
// requests/s, p99 latency and the nginx/direct ratios (make bench-app).
func BenchmarkNginxOverhead(b *testing.B) {
	r := startRouting(b)
	const requests, concurrency = 3000, 16
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		direct := load(b, r.direct["thor"], "thor.polls.local", requests, concurrency)
		proxied := load(b, r.nginx, "thor.polls.local", requests, concurrency)
		b.ReportMetric(direct.rps, "direct-req/s")
		b.ReportMetric(proxied.rps, "nginx-req/s")
		b.ReportMetric(float64(direct.p99.Microseconds()), "direct-p99-µs")
		b.ReportMetric(float64(proxied.p99.Microseconds()), "nginx-p99-µs")
		b.ReportMetric(proxied.rps/direct.rps, "rps-ratio")
		b.ReportMetric(float64(proxied.p99)/float64(direct.p99), "p99-ratio")
		fmt.Printf("direct: %.0f req/s, p99 %v\nnginx:  %.0f req/s, p99 %v\nratio nginx/direct: throughput %.2f, p99 %.2f\n",
			direct.rps, direct.p99, proxied.rps, proxied.p99, proxied.rps/direct.rps, float64(proxied.p99)/float64(direct.p99))
	}
}

type loadResult struct {
	rps float64
	p99 time.Duration
}

// load sends n GET / requests with the given Host from c workers; any failed
// request fails the benchmark.
func load(tb testing.TB, base, host string, n, c int) loadResult {
	tb.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}, Timeout: 10 * time.Second}
	lat := make([]time.Duration, n)
	var next int64 = -1
	var mu sync.Mutex
	var failed error
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			for {
				mu.Lock()
				next++
				i := next
				mu.Unlock()
				if i >= int64(n) {
					return
				}
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, base+"/", nil)
				req.Host = host
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed != nil {
		tb.Fatalf("load on %s: %v", base, failed)
	}
	slices.Sort(lat)
	return loadResult{rps: float64(n) / elapsed.Seconds(), p99: lat[n*99/100]}
}
