package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestACMEBench measures the router with ACME against itself without TLS,
// in one run on one stack (make bench-https): requests/s through the
// router over HTTPS against plain HTTP, with keep-alive and with a new
// connection (a full handshake, certificate loaded from disk) per request,
// and the time from `pulumi up` adding a tenant to its first HTTPS 200
// verified against pebble's root. The HTTP baseline is the same app
// through the same router under a host pebble refuses, which therefore
// stays on plain HTTP. It runs only with POLLS_BENCH_HTTPS=1.
func TestACMEBench(t *testing.T) {
	if os.Getenv("POLLS_BENCH_HTTPS") != "1" {
		t.Skip("benchmark: run with POLLS_BENCH_HTTPS=1 (make bench-https)")
	}
	a := newACMEEnv(t, "plain.polls.test")
	a.setTenants(`{"alpha":{"hosts":["plain.polls.test"]}}`)
	a.up()
	if s := a.status()["alpha.polls.local"]; s.State != "valid" {
		t.Fatalf("alpha has no certificate: %+v", s)
	}

	const requests, concurrency = 4000, 16
	httpClient := func(keepAlive bool) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 64}}
	}
	type mode struct {
		name      string
		keepAlive bool
	}
	fmt.Printf("router throughput, GET /healthz, %d requests at concurrency %d each (host: %d cores)\n", requests, concurrency, runtime.NumCPU())
	for _, m := range []mode{{"keep-alive", true}, {"new connection per request", false}} {
		plain := measure(t, httpClient(m.keepAlive), a.base()+"/healthz", "plain.polls.test", requests, concurrency)
		tls := measure(t, a.ca.tlsClient(a.httpsPort, m.keepAlive), "https://alpha.polls.local/healthz", "", requests, concurrency)
		fmt.Printf("  %-27s HTTP %7.0f req/s (p99 %v)  HTTPS %7.0f req/s (p99 %v)  ratio HTTPS/HTTP %.2f\n",
			m.name+":", plain.rps, plain.p99.Round(time.Microsecond), tls.rps, tls.p99.Round(time.Microsecond), tls.rps/plain.rps)
	}

	// Adding a tenant: from the start of `pulumi up` to its first HTTPS
	// 200 whose chain and name verify.
	client := a.ca.tlsClient(a.httpsPort, false)
	a.setTenants(`{"alpha":{"hosts":["plain.polls.test"]},"beta":{}}`)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- a.upErr() }()
	var first time.Duration
	for first == 0 {
		resp, err := client.Get("https://beta.polls.local/")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				first = time.Since(start)
				break
			}
		}
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("beta: no verified HTTPS 200 within 3 minutes: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatalf("pulumi up adding beta: %v", tailErr(err))
	}
	fmt.Printf("adding a tenant: first verified HTTPS 200 %.1f s after `pulumi up` started; the up took %.1f s\n", first.Seconds(), time.Since(start).Seconds())
}

type measured struct {
	rps float64
	p99 time.Duration
}

// measure sends n GETs to url (with host, if given) from c workers; a
// failed request fails the test.
func measure(t *testing.T, client *http.Client, url, host string, n, c int) measured {
	t.Helper()
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	begin := time.Now()
	for range c {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if host != "" {
					req.Host = host
				}
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
					failed.Store(err.Error())
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	if f := failed.Load(); f != nil {
		t.Fatalf("load on %s: %v", url, f)
	}
	slices.Sort(lat)
	return measured{rps: float64(n) / elapsed.Seconds(), p99: lat[n*99/100]}
}
