package main

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/internal/fakes"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/swarm"
	"github.com/polls-tenants/polls/tenants"
	"github.com/polls-tenants/polls/tools/internal/gen"
)

// The program's side of the comparison: a stack of this prefix, with these
// images, on a cluster of these two nodes.
const (
	prefix   = "polls-bench"
	appImage = "10.231.0.1:5000/polls/app@sha256:" + "ab" + "cd"
	pgImage  = "10.231.0.1:5000/polls/postgres:15"
)

var clusterNodes = []string{"node-b", "node-a"} // unsorted on purpose

// svc is what must match between a stack service and what the program
// declares for it (a service, or for the migration a container).
type svc struct {
	Image       string
	Args        []string
	Env         []string
	Files       []string // secret files, by path in the container
	Health      []string // test, interval, timeout, retries, start period
	StopGrace   string
	StopSignal  string
	Replicas    int
	MemoryMB    int
	Update      string
	Rollback    string
	Endpoint    string
	Constraints []string
	Prefs       []string
	Networks    []string // name: aliases
	Mounts      []string // type source target
	Labels      map[string]string
}

// TestMatchesProgram ensures each tenant's services are what swarm/*.go
// declares for the tenant: images, arguments, environment, secret files,
// health check, replicas, memory, update and rollback config, endpoint
// mode, placement, networks, volume and labels; with either
// polls:migrations.
func TestMatchesProgram(t *testing.T) {
	for _, migrations := range []string{spec.MigrationsContainer, spec.MigrationsApp} {
		t.Run("migrations "+migrations, func(t *testing.T) { matchesProgram(t, migrations) })
	}
}

// matchesProgram is TestMatchesProgram for one polls:migrations.
func matchesProgram(t *testing.T, migrations string) {
	r := declare(t, migrations, "t01", "t02", "t03")
	o := defaultOptions()
	// The program pins the database image to its digest in the registry;
	// bench-swarm.sh gives stackgen the pinned reference.
	o.Tenants, o.Project, o.AppImage, o.PostgresImage, o.Nodes = 3, prefix, appImage, pgImage+"@"+fakes.Digest(pgImage), clusterNodes
	o.Migrations = migrations
	c, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"t01", "t02", "t03"} {
		for _, role := range []string{"db", "app"} {
			name := tenant + "-" + role
			t.Run(name, func(t *testing.T) {
				in, ok := r.get("docker:index/service:Service", name)
				if !ok {
					t.Fatalf("the program declares no service %s", name)
				}
				want, got := fromProgramService(t, in), fromStack(t, c.Services[name])
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("service %s differs from the program's (-program +stackgen):\n%s", name, diff)
				}
			})
		}
		t.Run(tenant+"-migrate", func(t *testing.T) {
			in, ok := r.get("docker:index/container:Container", tenant+"-migrate")
			_, service := c.Services[tenant+"-migrate"]
			if migrations == spec.MigrationsApp {
				if ok || service {
					t.Errorf("with polls:migrations app: a migration container declared %v, a migrate service written %v; want neither", ok, service)
				}
				return
			}
			if !ok {
				t.Fatalf("the program declares no migration container for %s", tenant)
			}
			m := in.Mappable()
			want := svc{
				Image: fmt.Sprint(m["image"]), Args: strs(m["command"]), Env: sorted(strs(m["envs"])),
				MemoryMB: num(m["memory"]),
			}
			for _, u := range list(m["uploads"]) {
				want.Files = append(want.Files, fmt.Sprint(u.(map[string]any)["file"]))
			}
			for _, n := range list(m["networksAdvanced"]) {
				want.Networks = append(want.Networks, unprefixed(fmt.Sprint(n.(map[string]any)["name"]))+":")
			}
			sort.Strings(want.Files)
			s := c.Services[tenant+"-migrate"]
			got := fromStack(t, s)
			// What the stack says instead of a container run once on the
			// manager: a one-replica service there, restarted on failure.
			if s.Deploy.Replicas != 1 || s.Deploy.RestartPolicy == nil || s.Deploy.RestartPolicy.Condition != "on-failure" ||
				!cmp.Equal(s.Deploy.Placement.Constraints, []string{"node.role==manager"}) {
				t.Errorf("migrate service: replicas %d, restart %+v, constraints %v; want 1, on-failure, on the manager",
					s.Deploy.Replicas, s.Deploy.RestartPolicy, s.Deploy.Placement.Constraints)
			}
			got = svc{Image: got.Image, Args: got.Args, Env: got.Env, Files: got.Files, MemoryMB: got.MemoryMB, Networks: got.Networks}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("migration of %s differs from the program's container (-program +stackgen):\n%s", tenant, diff)
			}
		})
		t.Run(tenant+"-net", func(t *testing.T) {
			in, _ := r.get("docker:index/network:Network", tenant+"-net")
			if diff := cmp.Diff(fromProgramNetwork(in), c.Networks[tenant+"-net"]); diff != "" {
				t.Errorf("network differs from the program's (-program +stackgen):\n%s", diff)
			}
		})
	}
	t.Run("edge", func(t *testing.T) {
		in, _ := r.get("docker:index/network:Network", "edge")
		if diff := cmp.Diff(fromProgramNetwork(in), c.Networks[edgeNetwork]); diff != "" {
			t.Errorf("edge network differs from the program's (-program +stackgen):\n%s", diff)
		}
	})
	t.Run("volume", func(t *testing.T) {
		in, _ := r.get("docker:index/service:Service", "t01-db")
		task := in.Mappable()["taskSpec"].(map[string]any)
		mnt := list(task["containerSpec"].(map[string]any)["mounts"])[0].(map[string]any)
		want := map[string]string{}
		for _, l := range list(mnt["volumeOptions"].(map[string]any)["labels"]) {
			m := l.(map[string]any)
			want[fmt.Sprint(m["label"])] = fmt.Sprint(m["value"])
		}
		if diff := cmp.Diff(want, c.Volumes["t01-pgdata"].Labels); diff != "" {
			t.Errorf("t01's volume labels differ from the program's (-program +stackgen):\n%s", diff)
		}
	})
}

// TestPlacementMatchesProgram ensures the databases of ten new tenants go
// to the nodes the program places them on: alternating, the first
// hostname in sorted order first.
func TestPlacementMatchesProgram(t *testing.T) {
	names := gen.TenantNames(10)
	r := declare(t, spec.DefaultMigrations, names...)
	o := defaultOptions()
	o.Tenants, o.Nodes = 10, clusterNodes
	got, err := databaseNodes(o)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r.nodes, got); diff != "" {
		t.Errorf("database nodes differ from the program's plan (-program +stackgen):\n%s", diff)
	}
	if got["t01"] != "node-a" || got["t02"] != "node-b" || got["t03"] != "node-a" {
		t.Errorf("t01..t03 on %s, %s, %s; want node-a, node-b, node-a", got["t01"], got["t02"], got["t03"])
	}
}

// cluster is a Swarm manager's engine with two empty, active nodes.
func cluster() *fakes.Engine {
	e := &fakes.Engine{NodeList: []dockerapi.Node{}}
	for i, n := range clusterNodes {
		e.NodeList = append(e.NodeList, dockerapi.Node{ID: fmt.Sprint(i), Hostname: n, Ready: true, Availability: "active"})
	}
	return e
}

// recorder is what the program declared, and where it placed databases.
type recorder struct {
	*fakes.Provider
	nodes map[string]string
}

func (r *recorder) get(typ, name string) (resource.PropertyMap, bool) { return r.Inputs(typ, name) }

// declare runs the swarm platform for the given tenants (the default stack
// config but polls:migrations, no pins) under mocks, and records what it
// declares.
func declare(t *testing.T, migrations string, names ...string) *recorder {
	t.Helper()
	s, err := spec.Parse(map[string]string{
		"platform": "swarm", "registry": "10.231.0.1:5000/polls", "postgresImage": pgImage,
		"tenants": `["` + strings.Join(names, `","`) + `"]`, "migrations": migrations,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{Provider: fakes.NewProvider()}
	err = pulumi.RunErr(func(ctx *pulumi.Context) error {
		p, err := swarm.New(ctx, cluster(), s, prefix)
		if err != nil {
			return err
		}
		r.nodes = p.Nodes
		if err := p.Declare(ctx); err != nil {
			return err
		}
		for _, tn := range s.Tenants {
			if _, err := tenants.New(ctx, tenants.Args{
				Tenant: tn, Stack: s, Prefix: prefix, AppImage: pulumi.String(appImage), Platform: p, AppPort: p.AppPort(tn.Name),
				Key: pulumi.String("tenant-key").ToStringOutput(),
			}); err != nil {
				return err
			}
		}
		return nil
	}, pulumi.WithMocks("polls", "bench", r))
	if err != nil {
		t.Fatalf("swarm platform under mocks: %v", err)
	}
	return r
}

// network names a program network as the stack file does: without the
// stack's prefix.
func unprefixed(name string) string { return strings.TrimPrefix(name, prefix+"-") }

func fromProgramNetwork(in resource.PropertyMap) network {
	m := in.Mappable()
	n := network{Driver: fmt.Sprint(m["driver"]), Internal: m["internal"] == true, Attachable: m["attachable"] == true}
	for _, l := range list(m["labels"]) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		lm := l.(map[string]any)
		n.Labels[fmt.Sprint(lm["label"])] = fmt.Sprint(lm["value"])
	}
	return n
}

func fromProgramService(t *testing.T, in resource.PropertyMap) svc {
	t.Helper()
	m := in.Mappable()
	task := m["taskSpec"].(map[string]any)
	cs := task["containerSpec"].(map[string]any)
	s := svc{
		Image:      fmt.Sprint(cs["image"]),
		Args:       strs(cs["args"]),
		StopGrace:  dur(t, cs["stopGracePeriod"]),
		StopSignal: str(cs["stopSignal"]),
		Replicas:   num(m["mode"].(map[string]any)["replicated"].(map[string]any)["replicas"]),
		Endpoint:   fmt.Sprint(m["endpointSpec"].(map[string]any)["mode"]),
		Labels:     map[string]string{},
	}
	for k, v := range cs["env"].(map[string]any) {
		if k == swarm.SpecEnv { // the digest only the program's wait reads
			continue
		}
		s.Env = append(s.Env, k+"="+fmt.Sprint(v))
	}
	sort.Strings(s.Env)
	for _, sec := range list(cs["secrets"]) {
		s.Files = append(s.Files, "/run/secrets/"+fmt.Sprint(sec.(map[string]any)["fileName"]))
	}
	sort.Strings(s.Files)
	if h, ok := cs["healthcheck"].(map[string]any); ok {
		s.Health = []string{strings.Join(strs(h["tests"]), " "), dur(t, h["interval"]), dur(t, h["timeout"]), fmt.Sprint(num(h["retries"])), dur(t, h["startPeriod"])}
	}
	if res, ok := task["resources"].(map[string]any); ok {
		if l, ok := res["limits"].(map[string]any); ok {
			s.MemoryMB = num(l["memoryBytes"]) >> 20
		}
	}
	s.Update = update(t, m["updateConfig"])
	s.Rollback = update(t, m["rollbackConfig"])
	if p, ok := task["placement"].(map[string]any); ok {
		s.Constraints = strs(p["constraints"])
		s.Prefs = strs(p["prefs"])
	}
	for _, n := range list(task["networksAdvanceds"]) {
		nm := n.(map[string]any)
		s.Networks = append(s.Networks, unprefixed(fmt.Sprint(nm["name"]))+":"+strings.Join(strs(nm["aliases"]), ","))
	}
	sort.Strings(s.Networks)
	for _, mt := range list(cs["mounts"]) {
		mm := mt.(map[string]any)
		s.Mounts = append(s.Mounts, fmt.Sprint(mm["type"], " ", unprefixed(fmt.Sprint(mm["source"])), " ", mm["target"]))
	}
	for _, l := range list(m["labels"]) {
		lm := l.(map[string]any)
		if k := fmt.Sprint(lm["label"]); k != "polls.migration" { // the gate's value: the stack has no gate
			s.Labels[k] = fmt.Sprint(lm["value"])
		}
	}
	return s
}

// update renders an update or rollback config with Swarm's defaults
// filled in, so unset and default compare equal.
func update(t *testing.T, v any) string {
	t.Helper()
	m, _ := v.(map[string]any)
	if m == nil {
		return ""
	}
	get := func(k, def string) string {
		if x, ok := m[k]; ok && x != nil {
			if f, ok := x.(float64); ok {
				return fmt.Sprint(int(f))
			}
			return fmt.Sprint(x)
		}
		return def
	}
	d := func(k string) string {
		if x, ok := m[k]; ok && x != nil {
			return dur(t, x)
		}
		return "0s"
	}
	return fmt.Sprintf("order=%s parallelism=%s delay=%s failure=%s monitor=%s",
		get("order", "stop-first"), get("parallelism", "1"), d("delay"), get("failureAction", "pause"), d("monitor"))
}

func fromStackUpdate(t *testing.T, u *updateConfig) string {
	t.Helper()
	if u == nil {
		return ""
	}
	m := map[string]any{}
	for k, v := range map[string]string{"order": u.Order, "failureAction": u.FailureAction, "delay": u.Delay, "monitor": u.Monitor} {
		if v != "" {
			m[k] = v
		}
	}
	if u.Parallelism != nil {
		m["parallelism"] = float64(*u.Parallelism)
	}
	return update(t, m)
}

func fromStack(t *testing.T, s service) svc {
	t.Helper()
	un := func(l []string) []string {
		var out []string
		for _, x := range l {
			out = append(out, strings.ReplaceAll(x, "$$", "$"))
		}
		return out
	}
	c := svc{
		Image: s.Image, Args: un(s.Command), Env: sorted(un(s.Environment)), StopSignal: s.StopSignal,
		Replicas: s.Deploy.Replicas, Endpoint: s.Deploy.EndpointMode,
		Update: fromStackUpdate(t, s.Deploy.UpdateConfig), Rollback: fromStackUpdate(t, s.Deploy.RollbackConfig),
		Constraints: s.Deploy.Placement.Constraints, Labels: s.Deploy.Labels,
	}
	if s.StopGracePeriod != "" {
		c.StopGrace = dur(t, s.StopGracePeriod)
	}
	for _, p := range s.Deploy.Placement.Preferences {
		c.Prefs = append(c.Prefs, "spread="+p.Spread)
	}
	for _, f := range s.Secrets {
		c.Files = append(c.Files, path.Join("/run/secrets", f.Target))
	}
	sort.Strings(c.Files)
	if h := s.Healthcheck; h != nil {
		c.Health = []string{strings.Join(un(h.Test), " "), dur(t, h.Interval), dur(t, h.Timeout), fmt.Sprint(h.Retries), dur(t, h.StartPeriod)}
	}
	if r := s.Deploy.Resources; r != nil {
		fmt.Sscanf(r.Limits.Memory, "%dM", &c.MemoryMB)
	}
	for n, a := range s.Networks {
		c.Networks = append(c.Networks, n+":"+strings.Join(a.Aliases, ","))
	}
	sort.Strings(c.Networks)
	for _, m := range s.Volumes {
		c.Mounts = append(c.Mounts, fmt.Sprint(m.Type, " ", m.Source, " ", m.Target))
	}
	return c
}

func sorted(l []string) []string {
	out := append([]string(nil), l...)
	sort.Strings(out)
	return out
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func strs(v any) []string {
	var out []string
	for _, x := range list(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

// dur normalises a duration, so "2m" and "2m0s" compare equal.
func dur(t *testing.T, v any) string {
	t.Helper()
	d, err := time.ParseDuration(fmt.Sprint(v))
	if err != nil {
		t.Fatalf("duration %v: %v", v, err)
	}
	return d.String()
}
