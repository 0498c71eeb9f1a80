package nginx_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/nginx/nginxtest"
)

// testCA issues leaf certificates for the ACME tests, as the companion's
// CA would.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pool *x509.CertPool
	next int64
}

func newTestCA(tb testing.TB) *testCA {
	tb.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "polls test root"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &testCA{key: key, cert: c, pool: pool, next: 1000}
}

// install writes host's certificate (a new serial each time) and key into
// dir as the companion does, key first, and returns the serial.
func (ca *testCA) install(tb testing.TB, dir, host string, key *ecdsa.PrivateKey) int64 {
	tb.Helper()
	ca.next++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.next), DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	write := func(name string, data []byte) {
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			tb.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			tb.Fatal(err)
		}
	}
	write(host+".key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	write(host+".crt", append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...))
	return ca.next
}

// acmeRouter is real nginx with an ACME config in front of one tenant.
type acmeRouter struct {
	http, https string // host:port
	certs       string
	webroot     string
	ca          *testCA
}

func startACMERouter(tb testing.TB) *acmeRouter { return startACMERouterWith(tb, nil) }

// startACMERouterWith is startACMERouter with an extra server block, made
// by extra from the certificate directory and the CA (%s is its listen
// address).
func startACMERouterWith(tb testing.TB, extra func(certs string, ca *testCA) string) *acmeRouter {
	tb.Helper()
	nginxtest.Binary(tb)
	dir := tb.TempDir()
	r := &acmeRouter{certs: filepath.Join(dir, "certs"), webroot: filepath.Join(dir, "webroot"), ca: newTestCA(tb)}
	for _, d := range []string{r.certs, filepath.Join(r.webroot, ".well-known", "acme-challenge")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "thor via %s", req.Header.Get("X-Forwarded-Proto"))
	}))
	tb.Cleanup(app.Close)
	r.http = "127.0.0.1:" + strconv.Itoa(nginxtest.FreePort(tb))
	r.https = "127.0.0.1:" + strconv.Itoa(nginxtest.FreePort(tb))
	_, port, _ := net.SplitHostPort(r.https)
	p, _ := strconv.Atoi(port)
	conf, err := Render(Config{Resolver: "127.0.0.1", Listen: r.http, ListenTLS: r.https,
		ACME:    &ACME{CertDir: r.certs, Webroot: r.webroot, HTTPSPort: p},
		Servers: []Server{{Name: "thor", Hosts: []string{"thor.polls.example", "shop.example.org"}, Upstream: strings.TrimPrefix(app.URL, "http://")}}})
	if err != nil {
		tb.Fatal(err)
	}
	if extra != nil {
		conf = append(conf, fmt.Sprintf(extra(r.certs, r.ca), r.https)...)
	}
	nginxtest.Start(tb, conf, r.http)
	return r
}

// httpGet sends GET over HTTP with host, not following redirects.
func (r *acmeRouter) httpGet(tb testing.TB, host, path string) (int, string, string) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.http+path, nil)
	req.Host = host
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("GET http %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Location")
}

// httpsGet returns status, body and the served certificate's serial.
func (r *acmeRouter) httpsGet(host string) (int, string, int64, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: r.ca.pool, ServerName: host},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", r.https)
		},
	}}
	resp, err := c.Get("https://" + host + "/")
	if err != nil {
		return 0, "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
}

// TestACMEWithRealNginx ensures the ACME config behaves in real nginx: the
// challenge path is answered over HTTP for tenant and unknown hosts alike;
// a host without a certificate serves over HTTP and refuses the handshake
// rather than show a wrong certificate; once its files exist it redirects
// HTTP to HTTPS (on the public port) and serves a chain that verifies for
// its name; a renewed certificate is served at the next handshake without
// a reload; and an unknown name over HTTPS gets no certificate at all.
func TestACMEWithRealNginx(t *testing.T) {
	r := startACMERouter(t)
	if err := os.WriteFile(filepath.Join(r.webroot, ".well-known", "acme-challenge", "tok3n"), []byte("tok3n.thumbprint"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"thor.polls.example", "nobody.example"} {
		if code, body, _ := r.httpGet(t, host, "/.well-known/acme-challenge/tok3n"); code != 200 || body != "tok3n.thumbprint" {
			t.Errorf("challenge for %s = %d %q; want 200 with the token's answer", host, code, body)
		}
	}

	// Not issued yet: HTTP serves the app, HTTPS refuses the handshake.
	if code, body, _ := r.httpGet(t, "thor.polls.example", "/"); code != 200 || body != "thor via http" {
		t.Errorf("before the certificate: HTTP = %d %q; want the app over HTTP", code, body)
	}
	if _, _, _, err := r.httpsGet("thor.polls.example"); err == nil {
		t.Error("before the certificate: the HTTPS handshake succeeded; want it refused")
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	first := r.ca.install(t, r.certs, "thor.polls.example", key)
	_, port, _ := net.SplitHostPort(r.https)
	if code, _, loc := r.httpGet(t, "thor.polls.example", "/polls/1?x=y"); code != 301 || loc != "https://thor.polls.example:"+port+"/polls/1?x=y" {
		t.Errorf("after the certificate: HTTP = %d to %q; want 301 to the HTTPS port", code, loc)
	}
	if code, body, _ := r.httpGet(t, "thor.polls.example", "/.well-known/acme-challenge/tok3n"); code != 200 || body != "tok3n.thumbprint" {
		t.Errorf("after the certificate the challenge path = %d %q; want it still answered over HTTP", code, body)
	}
	if code, body, serial, err := r.httpsGet("thor.polls.example"); err != nil || code != 200 || body != "thor via https" || serial != first {
		t.Errorf("HTTPS = %d %q serial %d, %v; want 200 from the app with serial %d", code, body, serial, err, first)
	}
	// The tenant's other host has no certificate yet: it is not
	// redirected and not served another host's certificate.
	if code, _, _ := r.httpGet(t, "shop.example.org", "/"); code != 200 {
		t.Errorf("extra host without its certificate: HTTP = %d; want 200", code)
	}
	if _, _, _, err := r.httpsGet("shop.example.org"); err == nil {
		t.Error("extra host without its certificate: HTTPS handshake succeeded")
	}

	renewed := r.ca.install(t, r.certs, "thor.polls.example", key)
	if _, _, serial, err := r.httpsGet("thor.polls.example"); err != nil || serial != renewed {
		t.Errorf("after renewal: serial %d, %v; want the new serial %d without a reload", serial, err, renewed)
	}

	conn, err := tls.Dial("tcp", r.https, &tls.Config{ServerName: "nobody.example", InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Error("unknown name over HTTPS: handshake succeeded; want it rejected")
	}
}

// BenchmarkCertificateLoading compares, in one real nginx, HTTPS over a
// new connection per request to a host whose certificate is loaded at each
// handshake (the ACME config's variable path) against one loaded once at
// startup (a fixed path), and reports the ratio (make bench-https).
func BenchmarkCertificateLoading(b *testing.B) {
	r := startACMERouterWith(b, func(certs string, ca *testCA) string {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ca.install(b, certs, "static.polls.example", key)
		return fmt.Sprintf("server {\n    listen %%s ssl;\n    server_name static.polls.example;\n    ssl_certificate %[1]s/static.polls.example.crt;\n    ssl_certificate_key %[1]s/static.polls.example.key;\n    return 200 \"static\";\n}\n", certs)
	})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	r.ca.install(b, r.certs, "thor.polls.example", key)
	const n, c = 2000, 8
	rate := func(host string, resume bool) float64 {
		cfg := &tls.Config{RootCAs: r.ca.pool, ServerName: host}
		if resume {
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
		}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: true, TLSClientConfig: cfg,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", r.https)
			},
		}}
		start := time.Now()
		var wg sync.WaitGroup
		var next, failed atomic.Int64
		for range c {
			wg.Go(func() {
				for next.Add(1) <= n {
					resp, err := client.Get("https://" + host + "/")
					if err != nil {
						failed.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
		if failed.Load() > 0 {
			b.Fatalf("%s: %d requests failed", host, failed.Load())
		}
		return n / time.Since(start).Seconds()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, resume := range []bool{false, true} {
			static := rate("static.polls.example", resume)
			perHandshake := rate("thor.polls.example", resume)
			what := "full handshakes"
			if resume {
				what = "resumed sessions"
			}
			b.ReportMetric(perHandshake/static, "ratio-"+strings.ReplaceAll(what, " ", "-"))
			fmt.Printf("HTTPS, new connection per request, %s (%d at concurrency %d): certificate loaded once %.0f req/s, at each handshake %.0f req/s, ratio %.2f\n",
				what, n, c, static, perHandshake, perHandshake/static)
		}
	}
}
