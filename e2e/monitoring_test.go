package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/polls-tenants/polls/nginx/nginxtest"
)

// AlertBound is how soon after a tenant stops serving its alert must reach
// the webhook: README's bound.
const AlertBound = 60 * time.Second

// monitor is the stack's monitoring as the test sees it: Prometheus' API on
// the host's loopback, and a webhook receiver the test runs, which
// Alertmanager posts to.
type monitor struct {
	e          *env
	prometheus string
	token      string

	mu    sync.Mutex
	posts []alertPost
}

// alertPost is one notification Alertmanager sent.
type alertPost struct {
	at     time.Time
	auth   string
	Alerts []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

// useMonitoring turns polls:monitoring on, on the local images, with a
// webhook receiver the test serves on an address of the Docker host that
// the Alertmanager container reaches, and its token as a secret.
func (e *env) useMonitoring() *monitor {
	e.t.Helper()
	m := &monitor{e: e, token: "tok-" + randomHex(12)}
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		e.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := alertPost{at: time.Now(), auth: r.Header.Get("Authorization")}
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m.mu.Lock()
		m.posts = append(m.posts, p)
		m.mu.Unlock()
	})}
	go func() { _ = srv.Serve(l) }()
	e.t.Cleanup(func() { srv.Close() })
	port := nginxtest.FreePort(e.t)
	m.prometheus = "http://127.0.0.1:" + strconv.Itoa(port)
	e.config["polls:monitoring"] = "true"
	e.config["polls:monitoringPort"] = strconv.Itoa(port)
	e.config["polls:prometheusImage"] = "polls-local/prometheus:2.42"
	e.config["polls:alertmanagerImage"] = "polls-local/alertmanager:0.25"
	e.config["polls:alertWebhookUrl"] = fmt.Sprintf("http://%s:%d/alerts", e.hostAddress(), l.Addr().(*net.TCPAddr).Port)
	e.config["polls:alertWebhookToken"] = m.token
	e.secret["polls:alertWebhookToken"] = true
	return m
}

// hostAddress is an address of the Docker host that containers reach: the
// default bridge's own, on the host's side (docker0).
func (e *env) hostAddress() string {
	e.t.Helper()
	name := e.docker("network", "inspect", "bridge", "-f", `{{index .Options "com.docker.network.bridge.name"}}`)
	if name == "" || name == "<no value>" {
		name = "docker0"
	}
	iface, err := net.InterfaceByName(name)
	if err != nil {
		e.t.Fatalf("the default bridge's interface %s: %v (the webhook needs an address of the host that containers reach)", name, err)
	}
	addrs, _ := iface.Addrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	e.t.Fatalf("the default bridge's interface %s has no IPv4 address for the webhook", name)
	return ""
}

// value returns the sum of what a PromQL query gives now, and whether it
// gave anything.
func (m *monitor) value(query string) (float64, bool) {
	m.e.t.Helper()
	resp, err := http.Get(m.prometheus + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		m.e.t.Fatalf("query Prometheus: %v", err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		m.e.t.Fatalf("query %s: %v %s", query, err, r.Error)
	}
	if len(r.Data.Result) == 0 {
		return 0, false
	}
	sum := 0.0
	for _, s := range r.Data.Result {
		v, _ := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		sum += v
	}
	return sum, true
}

// waitFor waits until query's value satisfies ok, and returns it.
func (m *monitor) waitFor(query string, within time.Duration, what string, ok func(v float64, found bool) bool) float64 {
	m.e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		v, found := m.value(query)
		if ok(v, found) {
			return v
		}
		if time.Now().After(deadline) {
			m.e.t.Fatalf("%s: %s = %v (found: %v) after %s", what, query, v, found, within)
		}
		time.Sleep(time.Second)
	}
}

// requests is the router's count of a tenant's requests, once it is
// stable: Prometheus scrapes the exporter every 5 s.
func (m *monitor) requests(tenant string) float64 {
	m.e.t.Helper()
	q := fmt.Sprintf(`sum(polls_router_requests_total{tenant=%q})`, tenant)
	last, _ := m.value(q)
	for range 10 {
		time.Sleep(6 * time.Second)
		v, _ := m.value(q)
		if v == last {
			return v
		}
		last = v
	}
	m.e.t.Fatalf("%s's request count does not settle", tenant)
	return 0
}

// checkRequestCounts sends each tenant its number of requests through the
// router and checks that the router's counters grew by exactly that much,
// for that tenant.
func (m *monitor) checkRequestCounts(sent map[string]int) {
	m.e.t.Helper()
	before := map[string]float64{}
	for tenant := range sent {
		before[tenant] = m.requests(tenant)
	}
	for tenant, n := range sent {
		for range n {
			m.e.get(tenant+".polls.local", "/")
		}
	}
	for tenant, n := range sent {
		want := before[tenant] + float64(n)
		m.waitFor(fmt.Sprintf(`sum(polls_router_requests_total{tenant=%q})`, tenant), 30*time.Second, tenant+"'s requests",
			func(v float64, _ bool) bool { return v == want })
		if got := m.requests(tenant); got != want {
			m.e.t.Errorf("%s: the router counted %v requests after %d were sent to it (%v before); want %v", tenant, got, n, before[tenant], want)
		}
	}
	m.e.t.Logf("request counters match what was sent: %v", sent)
}

// checkTenantMetrics checks that a tenant shows in every kind of metric:
// the router's requests (from 0), its app's health from the engine, its
// backup agent scraped, its database's numbers with the memory limit the
// stack sets, and its backups' freshness.
func (m *monitor) checkTenantMetrics(tenant string, dbMemoryMB int) {
	m.e.t.Helper()
	sel := fmt.Sprintf(`{tenant=%q}`, tenant)
	ready := func(what string, q string, ok func(float64, bool) bool) {
		m.waitFor(q, 90*time.Second, tenant+": "+what, ok)
	}
	found := func(v float64, f bool) bool { return f }
	one := func(v float64, f bool) bool { return f && v == 1 }
	ready("app healthy", `polls_replicas_healthy{role="app",tenant="`+tenant+`"}`, func(v float64, f bool) bool { return f && v >= 1 })
	ready("backup agent scraped", `up{job="polls-backup",tenant="`+tenant+`"}`, one)
	ready("database up", "polls_database_up"+sel, one)
	ready("database size", "polls_database_size_bytes"+sel, func(v float64, f bool) bool { return f && v > 1<<20 })
	ready("database memory limit", "polls_database_memory_limit_bytes"+sel, func(v float64, f bool) bool { return f && v == float64(dbMemoryMB<<20) })
	ready("database memory", "polls_database_memory_working_set_bytes"+sel, func(v float64, f bool) bool { return f && v > 0 && v < float64(dbMemoryMB<<20) })
	ready("database disk", "polls_database_filesystem_free_bytes"+sel+" / polls_database_filesystem_size_bytes"+sel, func(v float64, f bool) bool { return f && v > 0 && v < 1 })
	ready("log archived lately", "time() - polls_backup_wal_caught_up_timestamp_seconds"+sel, func(v float64, f bool) bool { return f && v < 120 })
	ready("a base backup", "polls_backup_last_base_timestamp_seconds"+sel, found)
	before := m.requests(tenant)
	for range 3 {
		m.e.get(tenant+".polls.local", "/")
	}
	ready("its requests counted", fmt.Sprintf(`sum(polls_router_requests_total{tenant=%q})`, tenant), func(v float64, _ bool) bool { return v == before+3 })
}

// checkAlert stops a tenant's app with stop and checks that an alert naming
// the tenant and the stack, with the webhook's token, reaches the webhook
// within AlertBound; start brings the app back.
func (m *monitor) checkAlert(tenant string, stop, start func()) {
	e := m.e
	e.t.Helper()
	since := time.Now()
	stop()
	deadline := since.Add(AlertBound + 30*time.Second)
	var got *alertPost
	for got == nil && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		m.mu.Lock()
		for i := range m.posts {
			p := &m.posts[i]
			for _, a := range p.Alerts {
				if p.at.After(since) && a.Status == "firing" && a.Labels["alertname"] == "TenantNotServing" && a.Labels["tenant"] == tenant && a.Labels["stack"] == e.prefix {
					got = p
				}
			}
		}
		m.mu.Unlock()
	}
	if got == nil {
		m.mu.Lock()
		e.t.Errorf("no TenantNotServing alert for %s reached the webhook within %s of stopping its app; received: %+v", tenant, AlertBound+30*time.Second, m.posts)
		m.mu.Unlock()
	} else {
		took := got.at.Sub(since)
		e.t.Logf("%s's app stopped: the TenantNotServing alert naming it reached the webhook after %s", tenant, took.Round(100*time.Millisecond))
		if took > AlertBound {
			e.t.Errorf("the alert took %s; README's bound is %s", took.Round(time.Second), AlertBound)
		}
		if got.auth != "Bearer "+m.token {
			e.t.Errorf("the webhook got Authorization %q; want the token of polls:alertWebhookToken", got.auth)
		}
	}
	start()
	deadline = time.Now().Add(2 * time.Minute)
	for {
		code, _ := e.get(tenant+".polls.local", "/")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s does not serve again after its app was started", tenant)
		}
		time.Sleep(time.Second)
	}
}

// checkIsolation checks that a tenant's app reaches nothing monitoring
// adds, by name or by address, and that the stack publishes only the
// router's port and Prometheus' on the host's loopback.
func (m *monitor) checkIsolation(app string, routerPorts ...int) {
	e := m.e
	e.t.Helper()
	for _, target := range []struct {
		container string
		port      int
	}{{"metrics", 9100}, {"prometheus", 9090}, {"alertmanager", 9093}} {
		name := e.prefix + "-" + target.container
		ip := e.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name)
		for _, host := range append([]string{name, target.container}, strings.Fields(ip)...) {
			reach := func() bool { return e.tcpReaches(app, host, target.port) }
			if reach() && e.reachesAgain(fmt.Sprintf("%s reached %s at %s:%d", app, target.container, host, target.port), reach) {
				e.t.Errorf("%s reaches %s at %s:%d", app, target.container, host, target.port)
			}
		}
	}
	ports := e.docker("ps", "--filter", "label=polls.stack="+e.prefix, "--format", "{{.Names}} {{.Ports}}")
	for line := range strings.SplitSeq(ports, "\n") {
		name, published, _ := strings.Cut(line, " ")
		published = strings.TrimSpace(published)
		if published == "" || !strings.Contains(published, "->") {
			continue
		}
		switch name {
		case e.prefix + "-router":
			for p := range strings.SplitSeq(published, ", ") {
				ok := false
				for _, rp := range routerPorts {
					ok = ok || strings.HasSuffix(strings.Split(p, "->")[0], ":"+strconv.Itoa(rp))
				}
				if !ok {
					e.t.Errorf("the router publishes %s; want only %v", p, routerPorts)
				}
			}
		case e.prefix + "-prometheus":
			if !strings.HasPrefix(published, "127.0.0.1:") || strings.Contains(published, ",") {
				e.t.Errorf("prometheus publishes %s; want the host's loopback only", published)
			}
		default:
			e.t.Errorf("%s publishes %s; want nothing", name, published)
		}
	}
}

// tcpReaches says whether a TCP connection to host:port opens from inside
// container's network namespace.
func (e *env) tcpReaches(container, host string, port int) bool {
	cmd := exec.Command("docker", "run", "--rm", "--network", "container:"+container, "polls-local/debian:bookworm",
		"timeout", "3", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", host, port))
	return cmd.Run() == nil
}
