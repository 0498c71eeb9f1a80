package metrics

import (
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeEngine answers the engine API's calls the exporter makes, on a unix
// socket, with what a test sets, and records the filters it was asked for.
type fakeEngine struct {
	mu         sync.Mutex
	containers []map[string]any
	services   []map[string]any
	tasks      []map[string]any
	events     chan map[string]any
	methods    []string
}

func startEngine(t *testing.T) (*fakeEngine, *Engine) {
	t.Helper()
	f := &fakeEngine{events: make(chan map[string]any, 8)}
	path := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	answer := func(get func() any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			f.methods = append(f.methods, r.Method+" "+r.URL.Path)
			v := get()
			f.mu.Unlock()
			if !strings.Contains(r.URL.Query().Get("filters"), `"polls.stack=polls-dev"`) {
				http.Error(w, "not filtered by the stack's label: "+r.URL.RawQuery, http.StatusBadRequest)
				return
			}
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	mux.HandleFunc("/containers/json", answer(func() any { return f.containers }))
	mux.HandleFunc("/services", answer(func() any { return f.services }))
	mux.HandleFunc("/tasks", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.methods = append(f.methods, r.Method+" "+r.URL.Path)
		_ = json.NewEncoder(w).Encode(f.tasks)
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.methods = append(f.methods, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		enc := json.NewEncoder(w)
		for {
			select {
			case ev := <-f.events:
				_ = enc.Encode(ev)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	e, err := NewEngine("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	return f, e
}

func container(id, tenant, role, state, status string) map[string]any {
	return map[string]any{"Id": id, "State": state, "Status": status,
		"Labels": map[string]string{labelStack: "polls-dev", labelTenant: tenant, labelRole: role}}
}

func gather(t *testing.T, c prometheus.Collector, want string, names ...string) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

// TestTenantsOneEngine ensures every tenant's app, database and backup
// agent are reported from its containers: how many there are, how many run
// and have not failed their health check (a stopped app and an unhealthy
// database are none; one whose first check has not run yet counts, as
// `pulumi up` checked it before routing to it), and their restarts,
// counted from the engine's start events of containers that had started
// before; other containers (a migration, the router's) are not reported.
func TestTenantsOneEngine(t *testing.T) {
	f, e := startEngine(t)
	f.containers = []map[string]any{
		container("a1", "thor", "app", "running", "Up 3 minutes (healthy)"),
		container("d1", "thor", "db", "running", "Up 3 minutes (healthy)"),
		container("b1", "thor", "backup", "running", "Up 3 minutes (health: starting)"),
		container("a2", "potter", "app", "exited", "Exited (0) 5 seconds ago"),
		container("d2", "potter", "db", "running", "Up 3 minutes (unhealthy)"),
		container("m2", "potter", "migrate", "exited", "Exited (0) 3 minutes ago"),
		{"Id": "r", "State": "running", "Status": "Up", "Labels": map[string]string{labelStack: "polls-dev", labelRole: "router"}},
	}
	tn := NewTenants("polls-dev", PlatformDocker, e)
	ctx := t.Context()
	go tn.WatchRestarts(ctx, t.Logf)
	// Wait for the watcher to have read the list, then restart thor's app
	// twice and start a new app container for potter (not a restart).
	waitFor(t, func() bool { tn.mu.Lock(); defer tn.mu.Unlock(); return tn.started["a1"] })
	for _, id := range []string{"a1", "a1", "a3"} {
		tenant := map[string]string{"a1": "thor", "a3": "potter"}[id]
		f.events <- map[string]any{"Action": "start", "Actor": map[string]any{"ID": id, "Attributes": map[string]string{labelTenant: tenant, labelRole: "app"}}}
	}
	waitFor(t, func() bool { tn.mu.Lock(); defer tn.mu.Unlock(); return tn.started["a3"] })
	f.mu.Lock()
	f.containers = append(f.containers, container("a3", "potter", "app", "running", "Up 1 second (health: starting)"))
	f.mu.Unlock()
	gather(t, tn, `
# HELP polls_engine_up 1 if the exporter's last look at the Docker engine succeeded.
# TYPE polls_engine_up gauge
polls_engine_up{stack="polls-dev"} 1
# HELP polls_replicas Replicas of a tenant's part (app, db, backup) that should run: its containers, or its Swarm service's replicas.
# TYPE polls_replicas gauge
polls_replicas{role="app",stack="polls-dev",tenant="potter"} 2
polls_replicas{role="app",stack="polls-dev",tenant="thor"} 1
polls_replicas{role="backup",stack="polls-dev",tenant="thor"} 1
polls_replicas{role="db",stack="polls-dev",tenant="potter"} 1
polls_replicas{role="db",stack="polls-dev",tenant="thor"} 1
# HELP polls_replicas_healthy Replicas of a tenant's part that run and have not failed their health check.
# TYPE polls_replicas_healthy gauge
polls_replicas_healthy{role="app",stack="polls-dev",tenant="potter"} 1
polls_replicas_healthy{role="app",stack="polls-dev",tenant="thor"} 1
polls_replicas_healthy{role="backup",stack="polls-dev",tenant="thor"} 1
polls_replicas_healthy{role="db",stack="polls-dev",tenant="potter"} 0
polls_replicas_healthy{role="db",stack="polls-dev",tenant="thor"} 1
# HELP polls_restarts_total Restarts of a tenant's part seen since the exporter started: a container started again, or a Swarm task that failed.
# TYPE polls_restarts_total counter
polls_restarts_total{role="app",stack="polls-dev",tenant="potter"} 0
polls_restarts_total{role="app",stack="polls-dev",tenant="thor"} 2
polls_restarts_total{role="backup",stack="polls-dev",tenant="thor"} 0
polls_restarts_total{role="db",stack="polls-dev",tenant="potter"} 0
polls_restarts_total{role="db",stack="polls-dev",tenant="thor"} 0
`)
	for _, m := range f.methods {
		if !strings.HasPrefix(m, "GET ") {
			t.Errorf("the exporter sent %s to the engine; it only reads", m)
		}
	}
}

// TestTenantsSwarm ensures on Swarm the apps and databases are read from
// their services (replicas wanted, tasks running, wherever they run) and a
// failed task counts one restart, once.
func TestTenantsSwarm(t *testing.T) {
	f, e := startEngine(t)
	f.containers = []map[string]any{container("b1", "thor", "backup", "running", "Up 3 minutes (healthy)")}
	service := func(id, tenant, role string, replicas int) map[string]any {
		return map[string]any{"ID": id, "Spec": map[string]any{"Name": "polls-dev-" + tenant + "-" + role,
			"Labels": map[string]string{labelStack: "polls-dev", labelTenant: tenant, labelRole: role},
			"Mode":   map[string]any{"Replicated": map[string]any{"Replicas": replicas}}}}
	}
	f.services = []map[string]any{service("s1", "thor", "app", 2), service("s2", "thor", "db", 1)}
	task := func(id, svc, desired, state string) map[string]any {
		return map[string]any{"ID": id, "ServiceID": svc, "DesiredState": desired, "Status": map[string]any{"State": state}}
	}
	f.tasks = []map[string]any{
		task("t1", "s1", "running", "running"), task("t2", "s1", "running", "starting"), task("t3", "s1", "shutdown", "failed"),
		task("t4", "s2", "running", "running"), task("t5", "other", "running", "running"),
	}
	tn := NewTenants("polls-dev", PlatformSwarm, e)
	want := `
# HELP polls_replicas Replicas of a tenant's part (app, db, backup) that should run: its containers, or its Swarm service's replicas.
# TYPE polls_replicas gauge
polls_replicas{role="app",stack="polls-dev",tenant="thor"} 2
polls_replicas{role="backup",stack="polls-dev",tenant="thor"} 1
polls_replicas{role="db",stack="polls-dev",tenant="thor"} 1
# HELP polls_replicas_healthy Replicas of a tenant's part that run and have not failed their health check.
# TYPE polls_replicas_healthy gauge
polls_replicas_healthy{role="app",stack="polls-dev",tenant="thor"} 1
polls_replicas_healthy{role="backup",stack="polls-dev",tenant="thor"} 1
polls_replicas_healthy{role="db",stack="polls-dev",tenant="thor"} 1
# HELP polls_restarts_total Restarts of a tenant's part seen since the exporter started: a container started again, or a Swarm task that failed.
# TYPE polls_restarts_total counter
polls_restarts_total{role="app",stack="polls-dev",tenant="thor"} 1
polls_restarts_total{role="backup",stack="polls-dev",tenant="thor"} 0
polls_restarts_total{role="db",stack="polls-dev",tenant="thor"} 0
`
	gather(t, tn, want, "polls_replicas", "polls_replicas_healthy", "polls_restarts_total")
	// Seen again, the same failed task is no new restart.
	gather(t, tn, want, "polls_restarts_total")
}

// TestTenantsEngineDown ensures an engine that does not answer shows as
// polls_engine_up 0, not as every tenant down.
func TestTenantsEngineDown(t *testing.T) {
	e, err := NewEngine("unix://" + filepath.Join(t.TempDir(), "missing.sock"))
	if err != nil {
		t.Fatal(err)
	}
	gather(t, NewTenants("polls-dev", PlatformDocker, e), `
# HELP polls_engine_up 1 if the exporter's last look at the Docker engine succeeded.
# TYPE polls_engine_up gauge
polls_engine_up{stack="polls-dev"} 0
`)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
