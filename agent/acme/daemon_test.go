package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA signs certificates for the fake issuer and counts orders.
type testCA struct {
	key    *ecdsa.PrivateKey
	cert   *x509.Certificate
	mu     sync.Mutex
	orders map[string]int
	refuse map[string]bool
	serial int64
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour * 24 * 365), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{key: key, cert: c, orders: map[string]int{}, refuse: map[string]bool{}, serial: 100}
}

func (ca *testCA) issue(_ context.Context, w Want, key crypto.Signer) ([]byte, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.orders[w.Name]++
	if ca.refuse[w.Name] {
		return nil, errors.New("acme: error: 400 :: POST :: https://ca.test/order :: urn:ietf:params:acme:error:rejectedIdentifier :: name is blocked")
	}
	ca.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial), DNSNames: []string{w.Name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...), nil
}

// harness runs a daemon's steps synchronously against a state and live
// directory, with the test CA for orders.
type harness struct {
	t     *testing.T
	dir   string
	ca    *testCA
	d     *daemon
	hosts string
}

func newHarness(t *testing.T, ca *testCA, dir string) *harness {
	h := &harness{t: t, dir: dir, ca: ca, hosts: filepath.Join(dir, "conf", "acme.hosts")}
	cfg := Config{Email: "ops@polls.example", Directory: "https://ca.test/dir", DNSProvider: "httpreq", Domain: "polls.example",
		RenewBefore: 30 * 24 * time.Hour, HostsFile: h.hosts, State: filepath.Join(dir, "state"), Live: filepath.Join(dir, "live"),
		Interval: time.Millisecond, Concurrency: 4}
	h.d = newDaemon(cfg)
	h.d.live.Owner = func() (int, int, error) { return os.Getuid(), os.Getgid(), nil }
	h.d.connect = func(context.Context) (issueFunc, error) { return ca.issue, nil }
	st, err := h.d.store.LoadStatus()
	if err != nil {
		t.Fatal(err)
	}
	h.d.status = st
	return h
}

func (h *harness) setHosts(lines ...string) {
	h.t.Helper()
	if err := os.MkdirAll(filepath.Dir(h.hosts), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(h.hosts, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// settle steps until no order is in flight, finishing each.
func (h *harness) settle() {
	h.t.Helper()
	ctx := context.Background()
	for range 20 {
		h.d.step(ctx)
		if len(h.d.inflight) == 0 {
			return
		}
		for len(h.d.inflight) > 0 {
			select {
			case r := <-h.d.done:
				h.d.finish(r)
			case <-time.After(10 * time.Second):
				h.t.Fatal("an order never finished")
			}
		}
	}
	h.t.Fatal("orders kept starting")
}

func (h *harness) host(name string) HostStatus {
	h.t.Helper()
	st, err := h.d.store.LoadStatus()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, hs := range st.Hosts {
		if hs.Host == name {
			return hs
		}
	}
	h.t.Fatalf("%s not in status.json: %+v", name, st.Hosts)
	return HostStatus{}
}

func (h *harness) live(name string) []byte {
	b, _ := os.ReadFile(filepath.Join(h.dir, "live", "certs", name))
	return b
}

// TestDaemon ensures the companion issues each host's certificate once,
// shares the wildcard among the domain's tenants, publishes key before
// certificate where nginx reads them, keeps a refused host failing with
// the CA's error and backing off while the others are served, renews on
// request with a new serial and the same key, forgets removed hosts'
// files, and after a restart on the same state orders nothing.
func TestDaemon(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	ca.refuse["blocked.example.org"] = true
	h := newHarness(t, ca, dir)
	h.setHosts("thor.polls.example thor", "potter.polls.example potter", "shop.example.org potter", "blocked.example.org thor")
	h.settle()

	for _, name := range []string{"thor.polls.example", "potter.polls.example", "shop.example.org"} {
		hs := h.host(name)
		if hs.State != "valid" || hs.Serial == "" || hs.Error != "" {
			t.Errorf("%s: %+v; want valid with a serial", name, hs)
		}
		if len(h.live(name+".crt")) == 0 || len(h.live(name+".key")) == 0 {
			t.Errorf("%s: certificate or key not published", name)
		}
	}
	if thor, potter := h.host("thor.polls.example"), h.host("potter.polls.example"); thor.Certificate != "*.polls.example" || thor.Serial != potter.Serial || thor.Challenge != DNS01 {
		t.Errorf("thor %+v and potter %+v; want both on the one DNS-01 wildcard", thor, potter)
	}
	if shop := h.host("shop.example.org"); shop.Certificate != "shop.example.org" || shop.Challenge != HTTP01 {
		t.Errorf("shop: %+v; want its own HTTP-01 certificate", shop)
	}
	blocked := h.host("blocked.example.org")
	if blocked.State != "failed" || !strings.Contains(blocked.Error, "rejectedIdentifier") || blocked.FailingSince.IsZero() || blocked.Attempts != 1 || !blocked.NextAttempt.After(time.Now()) {
		t.Errorf("blocked: %+v; want failed with the CA's error, since when, and a next attempt later", blocked)
	}
	if len(h.live("blocked.example.org.crt")) != 0 {
		t.Error("a refused host has a certificate file: the router would redirect it to HTTPS")
	}
	if ca.orders["*.polls.example"] != 1 || ca.orders["shop.example.org"] != 1 || ca.orders["blocked.example.org"] != 1 {
		t.Errorf("orders = %v; want one each", ca.orders)
	}

	// Steps during the backoff order nothing.
	h.settle()
	h.settle()
	if ca.orders["blocked.example.org"] != 1 {
		t.Errorf("the refused host was ordered %d times within its backoff; want 1", ca.orders["blocked.example.org"])
	}

	// A requested renewal: new serial, same key, the new chain published.
	oldKey, old := h.live("shop.example.org.key"), h.host("shop.example.org")
	if err := h.d.store.RequestRenewal("shop.example.org"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	renewed := h.host("shop.example.org")
	if renewed.Serial == old.Serial || string(h.live("shop.example.org.key")) != string(oldKey) {
		t.Errorf("renewal: serial %s -> %s, key kept %v; want a new serial and the same key", old.Serial, renewed.Serial, string(h.live("shop.example.org.key")) == string(oldKey))
	}
	if b, _ := pem.Decode(h.live("shop.example.org.crt")); b == nil {
		t.Error("renewed certificate not published")
	} else if c, _ := x509.ParseCertificate(b.Bytes); c == nil || SerialHex(c) != renewed.Serial {
		t.Errorf("published serial differs from the status's %s", renewed.Serial)
	}

	// A removed tenant: its files go, its renewals stop.
	h.setHosts("thor.polls.example thor", "blocked.example.org thor")
	h.settle()
	if len(h.live("shop.example.org.crt")) != 0 || len(h.live("potter.polls.example.key")) != 0 {
		t.Error("a removed tenant's hosts are still published")
	}
	if len(h.live("thor.polls.example.crt")) == 0 {
		t.Error("a remaining tenant lost its certificate")
	}

	// Restarted on the same state (a new container): nothing is ordered,
	// the backoff is remembered.
	before := map[string]int{}
	maps.Copy(before, ca.orders)
	h2 := newHarness(t, ca, dir)
	h2.setHosts("thor.polls.example thor", "potter.polls.example potter", "shop.example.org potter", "blocked.example.org thor")
	h2.settle()
	for k, v := range ca.orders {
		if before[k] != v {
			t.Errorf("after a restart %s was ordered again (%d -> %d)", k, before[k], v)
		}
	}
	if h2.host("shop.example.org").Serial != renewed.Serial || len(h2.live("shop.example.org.crt")) == 0 {
		t.Error("after a restart a re-added host does not serve its stored certificate")
	}
}

// TestNginxWorkerOwner ensures the key's owner is read from an nginx
// worker's /proc status, and its absence is an error that says why.
func TestNginxWorkerOwner(t *testing.T) {
	proc := t.TempDir()
	write := func(pid, cmdline, status string) {
		_ = os.MkdirAll(filepath.Join(proc, pid), 0o755)
		_ = os.WriteFile(filepath.Join(proc, pid, "cmdline"), []byte(cmdline), 0o644)
		_ = os.WriteFile(filepath.Join(proc, pid, "status"), []byte(status), 0o644)
	}
	write("1", "nginx: master process nginx -g daemon off;", "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n")
	if _, _, err := NginxWorkerOwner(proc)(); err == nil || !strings.Contains(err.Error(), "PID namespace") {
		t.Errorf("no worker: err = %v; want one naming the PID namespace", err)
	}
	write("7", "nginx: worker process\x00", "Name:\tnginx\nUid:\t101\t101\t101\t101\nGid:\t102\t102\t102\t102\n")
	if uid, gid, err := NginxWorkerOwner(proc)(); err != nil || uid != 101 || gid != 102 {
		t.Errorf("owner = %d:%d, %v; want 101:102", uid, gid, err)
	}
}

// TestWildcardTakesOverWithoutAGap ensures that when a DNS provider is
// configured, each tenant host keeps serving its own certificate until the
// wildcard is issued, so HTTPS never stops in between.
func TestWildcardTakesOverWithoutAGap(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	h := newHarness(t, ca, dir)
	h.d.cfg.DNSProvider = ""
	h.setHosts("thor.polls.example thor")
	h.settle()
	own := h.host("thor.polls.example")

	// The wildcard's order fails at first: thor keeps its own certificate.
	ca.refuse["*.polls.example"] = true
	h2 := newHarness(t, ca, dir)
	h2.setHosts("thor.polls.example thor")
	h2.settle()
	if got := h2.host("thor.polls.example"); got.State != "valid" || got.Serial != own.Serial || len(h2.live("thor.polls.example.crt")) == 0 {
		t.Errorf("while the wildcard fails: %+v; want thor still served its own certificate %s", got, own.Serial)
	}
	ca.refuse["*.polls.example"] = false
	if err := h2.d.store.RequestRenewal("*.polls.example"); err != nil {
		t.Fatal(err)
	}
	h2.settle()
	if got := h2.host("thor.polls.example"); got.Serial == own.Serial || got.Certificate != "*.polls.example" {
		t.Errorf("after the wildcard is issued: %+v; want thor on it", got)
	}
}

// TestSelfCheck ensures an HTTP-01 order waits until the router serves
// the webroot for the host: while it answers 404 the CA is not asked, the
// host shows failed with the router's answer and is tried again after a
// short backoff, not the CA's; the probe file is removed; once the router
// serves the host the certificate is ordered once. The domain's wildcard
// (DNS-01) is ordered without a self-check.
func TestSelfCheck(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	h := newHarness(t, ca, dir)
	var mu sync.Mutex
	served, asked := map[string]bool{}, map[string]int{}
	files := http.FileServer(http.Dir(h.d.live.Webroot()))
	router := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked[r.Host]++
		ok := served[r.Host]
		mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer router.Close()
	count := func(host string) int {
		mu.Lock()
		defer mu.Unlock()
		return asked[host]
	}
	h.d.cfg.SelfCheck = router.URL
	now := time.Now()
	h.d.now = func() time.Time { return now }

	h.setHosts("thor.polls.example thor", "shop.example.org potter")
	h.settle()
	shop := h.host("shop.example.org")
	if ca.orders["shop.example.org"] != 0 {
		t.Fatalf("the CA was asked for shop.example.org %d times while the router answered 404", ca.orders["shop.example.org"])
	}
	if shop.State != "failed" || shop.Attempts != 0 || !strings.Contains(shop.Error, "self-check") || !strings.Contains(shop.Error, "status 404") {
		t.Errorf("shop while the router does not serve it: %+v; want failed, 0 attempts at the CA, the router's 404 in its error", shop)
	}
	if wait := shop.NextAttempt.Sub(now); wait <= 0 || wait > SelfCheckBackoff(1) {
		t.Errorf("next self-check in %s; want within %s", wait, SelfCheckBackoff(1))
	}
	if ca.orders["*.polls.example"] != 1 || count("thor.polls.example") != 0 {
		t.Errorf("wildcard orders %d, router asked for thor %d times; want 1 and 0 (DNS-01 has no self-check)", ca.orders["*.polls.example"], count("thor.polls.example"))
	}
	left, _ := os.ReadDir(filepath.Join(h.d.live.Webroot(), ".well-known", "acme-challenge"))
	if len(left) != 0 {
		t.Errorf("the webroot keeps %d files after the self-check; want none", len(left))
	}

	// Within the backoff nothing is asked, of the router or the CA.
	before := count("shop.example.org")
	h.settle()
	if count("shop.example.org") != before {
		t.Errorf("the router was asked again within the self-check's backoff")
	}

	// The router serves it: the next try, a few seconds on, orders it once.
	mu.Lock()
	served["shop.example.org"] = true
	mu.Unlock()
	now = now.Add(SelfCheckBackoff(1))
	h.settle()
	if got := h.host("shop.example.org"); got.State != "valid" || got.Error != "" || ca.orders["shop.example.org"] != 1 {
		t.Errorf("once the router serves shop: %+v after %d orders; want valid after one", got, ca.orders["shop.example.org"])
	}
}

// TestSelfCheckBackoff ensures a failed self-check waits 5 s, doubling to
// 5 min, and leaves a running CA backoff and its count as they were.
func TestSelfCheckBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 7: 5 * time.Minute, 40: 5 * time.Minute} {
		if got := SelfCheckBackoff(n); got != want {
			t.Errorf("SelfCheckBackoff(%d) = %s; want %s", n, got, want)
		}
	}
	now := time.Now()
	rec := Record{}.Failed(now, "rejected", false)
	rec = rec.SelfCheckFailed(now.Add(time.Minute), "self-check: 404")
	if rec.Attempts != 1 || rec.SelfChecks != 1 || !rec.NextAttempt.Equal(now.Add(Backoff(1, false))) || !rec.FailingSince.Equal(now) {
		t.Errorf("after an order failed and then a self-check: %+v; want the CA's attempt and backoff kept, failing since the order", rec)
	}
	if rec = rec.Failed(now.Add(time.Hour), "rejected", false); rec.SelfChecks != 0 || rec.Attempts != 2 {
		t.Errorf("an order after a passed self-check: %+v; want its self-checks reset, 2 attempts", rec)
	}
}
