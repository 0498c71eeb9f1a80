package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
)

// acmeEnv is a throwaway stack whose router gets its certificates from a
// real ACME server on this machine.
type acmeEnv struct {
	*env
	ca        *pebble
	httpsPort int
}

// newACMEEnv starts pebble and a stack configured for it: HTTP-01 for
// every host (a DNS provider is added by useDNS), the agent built with Go
// 1.26. refused are hosts pebble's policy refuses.
func newACMEEnv(t *testing.T, refused ...string) *acmeEnv {
	t.Helper()
	requireToolchain(t)
	requirePebble(t)
	// Registered before the stack's own cleanup, so it runs after destroy,
	// which keeps the certificate state volume.
	var prefix string
	t.Cleanup(func() {
		if prefix != "" {
			_ = exec.Command("docker", "volume", "rm", "-f", prefix+"-acme", prefix+"-acme-live").Run()
			_ = exec.Command("docker", "image", "rm", "-f", prefix+"-agent:latest").Run()
		}
	})
	e := newEnv(t)
	prefix = e.prefix
	a := &acmeEnv{env: e}
	a.enable(refused...)
	return a
}

// enable starts pebble and configures the stack for it.
func (a *acmeEnv) enable(refused ...string) {
	e, t := a.env, a.t
	a.httpsPort = freePorts(t, 1, []int{e.port})[0]
	a.ca = startPebble(t, e.port, []int{a.httpsPort}, refused...)
	e.config["polls:httpsPort"] = strconv.Itoa(a.httpsPort)
	e.config["polls:acmeEmail"] = "ops@polls.example"
	e.config["polls:acmeDirectory"] = a.ca.Directory
	e.config["polls:acmeCaRoot"] = a.ca.CARoot
}

// useDNS makes the domain's tenants share a wildcard issued by DNS-01
// through lego's httpreq provider, its credentials a secret.
func (a *acmeEnv) useDNS() {
	creds, _ := json.Marshal(map[string]string{"HTTPREQ_ENDPOINT": a.ca.HTTPReq, "HTTPREQ_USERNAME": a.ca.User, "HTTPREQ_PASSWORD": a.ca.Password})
	a.config["polls:acmeDnsProvider"] = "httpreq"
	a.config["polls:acmeDnsCredentials"] = string(creds)
	a.secret["polls:acmeDnsCredentials"] = true
	a.config["polls:acmeDnsResolvers"] = `["` + a.ca.DNS + `"]`
}

// curl fetches https://host/ through the router with the real curl,
// verifying chain and name against pebble's root.
func (a *acmeEnv) curl(host string) (int, string, error) {
	root := a.t.TempDir() + "/root.pem"
	if err := os.WriteFile(root, []byte(a.ca.RootPEM), 0o644); err != nil {
		a.t.Fatal(err)
	}
	port := strconv.Itoa(a.httpsPort)
	out, err := exec.Command("curl", "-sS", "--max-time", "10", "--cacert", root, "--resolve", host+":"+port+":127.0.0.1",
		"-w", "\n%{http_code}", "https://"+host+":"+port+"/").CombinedOutput()
	if err != nil {
		return 0, string(out), err
	}
	i := strings.LastIndex(string(out), "\n")
	n, _ := strconv.Atoi(strings.TrimSpace(string(out[i+1:])))
	return n, string(out[:max(i, 0)]), nil
}

// status is the companion's status, read with its own command.
type hostStatus struct {
	Host, Tenant, State, Serial, Error, Certificate, Challenge string
	FailingSince, NotAfter                                     time.Time
}

func (a *acmeEnv) status() map[string]hostStatus {
	a.t.Helper()
	out := a.docker("exec", a.prefix+"-acme", "polls-agent", "acme", "status", "--json")
	var st struct{ Hosts []hostStatus }
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		a.t.Fatalf("acme status --json: %v\n%s", err, out)
	}
	m := map[string]hostStatus{}
	for _, h := range st.Hosts {
		m[h.Host] = h
	}
	return m
}

// orders counts the orders the companion started, from its log.
func (a *acmeEnv) orders() int {
	out, _ := exec.Command("docker", "logs", a.prefix+"-acme").CombinedOutput()
	return strings.Count(string(out), `msg="ordering certificate"`)
}

// checkSelfChecked checks that each host's HTTP-01 order was made only
// once nginx itself served the companion's own file for it (the
// self-check), from the companion's log.
func (a *acmeEnv) checkSelfChecked(hosts []string) {
	a.t.Helper()
	logs, _ := exec.Command("docker", "logs", a.prefix+"-acme").CombinedOutput()
	for _, h := range hosts {
		if !strings.Contains(string(logs), `msg="self-check passed" certificate=`+h) {
			a.t.Errorf("the companion's log has no passed self-check for %s before its order:\n%s", h, tail(string(logs), 2000))
		}
	}
}

// hammerTLS sends GET / over HTTPS to each host, a new connection (so a
// new handshake, verified against pebble's root) per request, until stop.
func (a *acmeEnv) hammerTLS(hosts []string) func() (int64, []string) {
	client := a.ca.tlsClient(a.httpsPort, false)
	return hammerEach(hosts, 10*time.Millisecond, func(host string) (*http.Response, error) {
		return client.Get("https://" + host + "/")
	})
}

// upWithOutput runs `pulumi up` and returns its output too (warnings).
func (a *acmeEnv) upWithOutput() (auto.UpResult, string) {
	a.t.Helper()
	var out strings.Builder
	res, err := a.stack.Up(a.ctx, optup.ProgressStreams(a.log, &out), optup.ErrorProgressStreams(a.log, &out))
	if err != nil {
		a.t.Fatalf("pulumi up: %s\n…\n%v", errorLines(err.Error()), tailErr(err))
	}
	return res, out.String()
}

// TestACME ensures the router issues and renews its own certificates from
// a real ACME server (Debian's pebble): HTTP-01 for two tenants and an
// extra host, each verified by curl with pebble's root; HTTP redirected to
// HTTPS and unknown names refused over HTTPS; a forced renewal under load
// with no failed request and the new serial served at once; a restart and
// a router replacement that keep the certificates without a new order; a
// wildcard by DNS-01 shared by the domain's tenants; a tenant added under
// load that gets its certificate with no failed request for the others; a
// host the CA refuses shown in the status and by `pulumi up`, the others
// unaffected; a removed tenant's certificate no longer served; and
// destroy + up that reuses the kept state without ordering again.
func TestACME(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped with -short")
	}
	// Beside TestSwarm, after or before TestEndToEnd (lanes_test.go).
	oneHostLane(t)
	a := newACMEEnv(t, "blocked.example.org")
	// Monitoring on: the certificates' metrics are checked in step 5.
	m := a.useMonitoring()

	// 1. HTTP-01: alpha, beta and beta's extra host.
	a.setTenants(`{"alpha":{},"beta":{"hosts":["shop.example.org"]}}`)
	a.up()
	a.noChanges()
	hosts := []string{"alpha.polls.local", "beta.polls.local", "shop.example.org"}
	st := a.status()
	for _, h := range hosts {
		if s := st[h]; s.State != "valid" || s.Challenge != "http-01" || s.Certificate != h {
			t.Errorf("%s: status %+v; want valid with its own HTTP-01 certificate", h, s)
		}
		code, body, err := a.curl(h)
		tenant := strings.Split(h, ".")[0]
		if h == "shop.example.org" {
			tenant = "beta"
		}
		if err != nil || code != 200 || !strings.Contains(body, tenant) {
			t.Errorf("curl --cacert pebble-root https://%s = %d, %v; want 200 from %s. Output:\n%s", h, code, err, tenant, tail(body, 500))
		}
	}
	a.checkSelfChecked(hosts)
	// HTTP redirects to HTTPS; the challenge path is answered over HTTP.
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/", "/.well-known/acme-challenge/nonexistent"} {
		req, _ := http.NewRequest(http.MethodGet, a.base()+path, nil)
		req.Host = "alpha.polls.local"
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusMovedPermanently
		if path != "/" {
			want = http.StatusNotFound
		}
		if resp.StatusCode != want || (want == 301 && resp.Header.Get("Location") != fmt.Sprintf("https://alpha.polls.local:%d/", a.httpsPort)) {
			t.Errorf("HTTP %s for alpha = %d to %q; want %d (to the HTTPS port for /)", path, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	if _, err := a.ca.servedSerial(a.httpsPort, "nobody.polls.local"); err == nil {
		t.Error("an unknown host over HTTPS completed a handshake; want it refused")
	}

	// 2. A forced renewal under load: no failed request, the new serial
	// served from the next handshake on.
	before := st["alpha.polls.local"].Serial
	stop := a.hammerTLS(hosts)
	out := a.docker("exec", a.prefix+"-acme", "polls-agent", "acme", "renew", "alpha.polls.local")
	time.Sleep(time.Second)
	sent, failures := stop()
	t.Logf("renewal under load: %s; %d requests over new connections, %d failed", out, sent, len(failures))
	if sent == 0 || len(failures) > 0 {
		t.Errorf("while renewing: %d requests, %d failed: %v", sent, len(failures), failures)
	}
	after := a.status()["alpha.polls.local"].Serial
	if served, err := a.ca.servedSerial(a.httpsPort, "alpha.polls.local"); err != nil || after == before || served != after {
		t.Errorf("after renewal: status serial %s (was %s), served %s, %v; want the new serial served", after, before, served, err)
	}

	// 3. A restart of both containers, then a router replacement: the
	// certificates are kept, nothing is ordered.
	serials := map[string]string{}
	for _, h := range hosts {
		serials[h] = a.status()[h].Serial
	}
	orders := a.orders()
	a.docker("restart", a.prefix+"-router")
	a.docker("restart", a.prefix+"-acme")
	a.waitServed(hosts, serials)
	if n := a.orders(); n != orders {
		t.Errorf("after a restart the companion ordered %d certificates; want none", n-orders)
	}
	urn := "urn:pulumi:" + strings.TrimPrefix(a.prefix, "polls-") + "::polls::polls:index:Router$docker:index/container:Container::router"
	if _, err := a.stack.Up(a.ctx, optup.Replace([]string{urn}), optup.ProgressStreams(a.log), optup.ErrorProgressStreams(a.log)); err != nil {
		t.Fatalf("pulumi up --replace the router: %v", tailErr(err))
	}
	a.waitServed(hosts, serials)
	if n := a.orders(); n != 0 {
		t.Errorf("after the router's replacement the new companion ordered %d certificates; want 0", n)
	}

	// 4. DNS-01: the domain's tenants move to one wildcard; the extra host
	// keeps its own.
	a.useDNS()
	a.setTenants(`{"alpha":{},"beta":{"hosts":["shop.example.org"]}}`)
	a.up()
	st = a.waitStatus("the wildcard issued", func(st map[string]hostStatus) bool {
		al, be := st["alpha.polls.local"], st["beta.polls.local"]
		return al.Certificate == "*.polls.local" && al.State == "valid" && al.Serial == be.Serial
	})
	if al, be := st["alpha.polls.local"], st["beta.polls.local"]; al.Certificate != "*.polls.local" || al.Challenge != "dns-01" || al.Serial != be.Serial || al.State != "valid" {
		t.Errorf("alpha %+v, beta %+v; want both on the valid DNS-01 wildcard *.polls.local", al, be)
	}
	if a.ca.Presented.Load() == 0 {
		t.Error("no DNS-01 record was set through the httpreq adapter")
	}
	if s := st["shop.example.org"]; s.Serial != serials["shop.example.org"] {
		t.Errorf("shop.example.org: serial %s; want its HTTP-01 certificate %s kept", s.Serial, serials["shop.example.org"])
	}
	for _, h := range hosts {
		if code, _, err := a.curl(h); err != nil || code != 200 {
			t.Errorf("curl https://%s after DNS-01 = %d, %v; want 200", h, code, err)
		}
	}

	// 5. gamma added under load, with a host the CA refuses: no failed
	// request for the others, gamma on the wildcard, the refused host
	// shown by `pulumi up` and in the status, served over HTTP.
	stop = a.hammerTLS(hosts)
	a.setTenants(`{"alpha":{},"beta":{"hosts":["shop.example.org"]},"gamma":{"hosts":["blocked.example.org"]}}`)
	start := time.Now()
	_, upOut := a.upWithOutput()
	sent, failures = stop()
	t.Logf("adding gamma took %s: %d HTTPS requests to the others, %d failed", time.Since(start).Round(time.Second), sent, len(failures))
	if sent == 0 || len(failures) > 0 {
		t.Errorf("while adding gamma: %d requests, %d failed: %v", sent, len(failures), failures)
	}
	if code, body, err := a.curl("gamma.polls.local"); err != nil || code != 200 || !strings.Contains(body, "gamma") {
		t.Errorf("gamma right after its `pulumi up`: curl = %d, %v; want 200 over HTTPS", code, err)
	}
	if !strings.Contains(upOut, "blocked.example.org") || !strings.Contains(upOut, "rejectedIdentifier") {
		t.Errorf("pulumi up does not warn about blocked.example.org with the CA's error:\n%s", tail(upOut, 3000))
	}
	blocked := a.status()["blocked.example.org"]
	if blocked.State != "failed" || !strings.Contains(blocked.Error, "rejectedIdentifier") || blocked.FailingSince.IsZero() {
		t.Errorf("blocked.example.org status %+v; want failed with the CA's error and since when", blocked)
	}
	if code, body := a.get("blocked.example.org", "/"); code != 200 || !strings.Contains(body, "gamma") {
		t.Errorf("the refused host over HTTP = %d; want 200 from gamma (no redirect)", code)
	}
	for h, s := range a.status() {
		if h != "blocked.example.org" && s.State != "valid" {
			t.Errorf("%s is %s with the refused host present; want valid", h, s.State)
		}
	}
	// The same in Prometheus, by tenant and host, for the alerts: the
	// refused host is not valid and fails since when the status says; a
	// served one expires when its certificate does.
	m.waitFor(`polls_certificate_valid{tenant="gamma",host="blocked.example.org"} == 0`, time.Minute, "the refused host in the metrics", func(_ float64, found bool) bool { return found })
	m.waitFor(`polls_certificate_failing_since_timestamp_seconds{tenant="gamma",host="blocked.example.org"}`, 30*time.Second, "the refused host's failures since the status says",
		func(v float64, found bool) bool { return found && int64(v) == blocked.FailingSince.Unix() })
	alpha := a.status()["alpha.polls.local"]
	m.waitFor(`polls_certificate_expiry_timestamp_seconds{tenant="alpha",host="alpha.polls.local"}`, 30*time.Second, "alpha's certificate expiry as the status says",
		func(v float64, found bool) bool { return found && int64(v) == alpha.NotAfter.Unix() })

	// 6. gamma removed: its hosts are no longer served or renewed.
	a.setTenants(`{"alpha":{},"beta":{"hosts":["shop.example.org"]}}`)
	a.up()
	a.waitStatus("gamma gone from the status", func(st map[string]hostStatus) bool {
		_, ok := st["gamma.polls.local"]
		return !ok
	})
	if _, err := a.ca.servedSerial(a.httpsPort, "gamma.polls.local"); err == nil {
		t.Error("removed gamma still completes an HTTPS handshake")
	}

	// 7. destroy + up: the kept state serves the same certificates,
	// nothing is ordered.
	for _, h := range hosts {
		serials[h] = a.status()[h].Serial
	}
	if _, err := a.stack.Destroy(a.ctx, optdestroy.ProgressStreams(a.log)); err != nil {
		t.Fatalf("pulumi destroy: %v", err)
	}
	if a.docker("volume", "ls", "-q", "--filter", "name=^"+a.prefix+"-acme$") == "" {
		t.Fatal("destroy removed the certificate state volume")
	}
	a.up()
	a.waitServed(hosts, serials)
	if n := a.orders(); n != 0 {
		t.Errorf("after destroy and up the companion ordered %d certificates; want 0", n)
	}
}

// waitServed waits until each host serves its expected serial over HTTPS.
func (a *acmeEnv) waitServed(hosts []string, serials map[string]string) {
	a.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, h := range hosts {
		for {
			got, err := a.ca.servedSerial(a.httpsPort, h)
			if err == nil && got == serials[h] {
				break
			}
			if time.Now().After(deadline) {
				a.t.Fatalf("%s serves %q (%v); want serial %s", h, got, err, serials[h])
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// waitStatus waits until ok holds for the companion's status.
func (a *acmeEnv) waitStatus(what string, ok func(map[string]hostStatus) bool) map[string]hostStatus {
	a.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := a.status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s: not within 60 s; status: %+v", what, st)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
