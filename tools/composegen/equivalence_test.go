package main

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/internal/fakes"
	"github.com/polls-tenants/polls/onehost"
	"github.com/polls-tenants/polls/ports"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/subnets"
	"github.com/polls-tenants/polls/tenants"
)

// container is what must match between a compose service and the container
// the program declares for it.
type container struct {
	Command  []string
	Env      []string
	Health   []string // test, interval, timeout, retries, start period
	Init     bool
	MemoryMB int
	SwapMB   int
	Restart  string
	Files    []string // secret files, by path in the container
	Aliases  []string
}

// TestMatchesProgram ensures each tenant service runs as the container
// tenants.New declares: same command, environment, health check, init,
// memory, restart policy, secret files and network aliases. It fails when
// the program changes one of them and composegen does not follow.
func TestMatchesProgram(t *testing.T) {
	for _, mode := range []struct {
		migrations string
		roles      []string
	}{
		{spec.MigrationsContainer, []string{"db", "migrate", "app"}},
		{spec.MigrationsApp, []string{"db", "app"}},
	} {
		t.Run("migrations "+mode.migrations, func(t *testing.T) {
			matchesProgram(t, mode.migrations, mode.roles)
		})
	}
}

// matchesProgram is TestMatchesProgram for one polls:migrations: the
// services are the program's containers, and there is no other.
func matchesProgram(t *testing.T, migrations string, roles []string) {
	declared := declaredContainers(t, "t01", migrations)
	o := defaultOptions()
	o.Migrations = migrations
	c, err := build(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	generated := c.Services
	var services []string
	for name := range generated {
		if role, ok := strings.CutPrefix(name, "t01-"); ok {
			services = append(services, role)
		}
	}
	sort.Strings(services)
	want := append([]string(nil), roles...)
	sort.Strings(want)
	if !cmp.Equal(want, services) {
		t.Errorf("t01's services are %q; want %q", services, roles)
	}
	for _, role := range []string{"db", "migrate", "app"} {
		if _, ok := declared["t01-"+role]; ok != slices.Contains(roles, role) {
			t.Errorf("the program declares t01-%s: %v; want %v", role, ok, !ok)
		}
	}
	for _, role := range roles {
		name := "t01-" + role
		t.Run(role, func(t *testing.T) {
			got, want := fromService(t, generated[name]), fromInputs(t, declared[name])
			// Compose gates on the engine's own health checks, which first
			// run one interval after start; the program probes the check
			// itself while a container starts, so its interval only paces
			// idle checks. Compose keeps short intervals (its fastest
			// gating), which only makes it a stricter baseline.
			if len(got.Health) > 1 && len(want.Health) > 1 {
				gi, _ := time.ParseDuration(got.Health[1])
				wi, _ := time.ParseDuration(want.Health[1])
				if gi > wi {
					t.Errorf("compose's %s health interval %s is longer than the program's %s", name, gi, wi)
				}
				got.Health[1] = want.Health[1]
			}
			// Compose's nginx finds the app by a fixed alias; the program's
			// route names the current app container instead.
			if role == "app" {
				want.Aliases = []string{"t01"}
			}
			if role == "db" {
				// Compose runs the readiness line of the program's
				// script, '$' escaped for compose as "$$".
				want.Health[0] = strings.TrimSuffix(strings.SplitN(want.Health[0], "\n", 2)[0], " || exit 1")
				got.Health[0] = strings.ReplaceAll(got.Health[0], "$$", "$")
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("service %s differs from the program's container (-program +composegen):\n%s", name, diff)
			}
		})
	}
}

// TestNetworkMatchesProgram ensures each tenant's compose network is the
// network tenants.New declares when stack.go plans a new tenant on an engine
// with no other network in the pool: internal, the same subnet and gateway,
// the same polls.tenant label.
func TestNetworkMatchesProgram(t *testing.T) {
	declared := declaredContainers(t, "t01", spec.DefaultMigrations)["t01-net"].Mappable()
	c, err := build(defaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	type net struct {
		Internal bool
		Subnets  []string // subnet/gateway
		Labels   map[string]string
	}
	want := net{Internal: declared["internal"] == true, Labels: map[string]string{}}
	for _, cfg := range list(declared["ipamConfigs"]) {
		m := cfg.(map[string]any)
		want.Subnets = append(want.Subnets, fmt.Sprint(m["subnet"], "/", m["gateway"]))
	}
	for _, l := range list(declared["labels"]) {
		m := l.(map[string]any)
		want.Labels[fmt.Sprint(m["label"])] = fmt.Sprint(m["value"])
	}
	n := c.Networks["t01"]
	got := net{Internal: n.Internal, Labels: n.Labels}
	if n.IPAM != nil {
		for _, cfg := range n.IPAM.Config {
			got.Subnets = append(got.Subnets, cfg.Subnet+"/"+cfg.Gateway)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("network t01 differs from the program's (-program +composegen):\n%s", diff)
	}
}

// declaredContainers runs tenants.New for one tenant with the default stack
// config under mocks, with the subnet and gateway stack.go gives a new
// tenant on an empty engine, and returns its containers' and network's
// inputs by logical name.
func declaredContainers(t *testing.T, tenant, migrations string) map[string]resource.PropertyMap {
	t.Helper()
	s, err := spec.Parse(map[string]string{"tenants": `["` + tenant + `"]`, "migrations": migrations})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := subnets.Plan(s.SubnetPool, []string{tenant}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := fakes.NewProvider()
	err = pulumi.RunErr(func(ctx *pulumi.Context) error {
		on := &onehost.Platform{
			Engine: &fakes.Engine{}, Edge: pulumi.String("edge").ToStringOutput(),
			Subnets:  plan,
			Gateways: map[string]netip.Addr{tenant: subnets.Gateway(plan[tenant])},
		}
		_, err := tenants.New(ctx, tenants.Args{
			Tenant: s.Tenants[0], Stack: s, Prefix: "polls-bench",
			AppImage: pulumi.String("app"), Platform: on, AppPort: ports.First,
			Key: pulumi.String("tenant-key").ToStringOutput(),
		})
		return err
	}, pulumi.WithMocks("polls", "bench", p))
	if err != nil {
		t.Fatalf("tenants.New under mocks: %v", err)
	}
	declared := map[string]resource.PropertyMap{}
	for key, in := range p.All() {
		typ, name, _ := strings.Cut(key, "::")
		if typ == "docker:index/container:Container" || typ == "docker:index/network:Network" {
			declared[name] = in
		}
	}
	return declared
}

func fromInputs(t *testing.T, in resource.PropertyMap) container {
	t.Helper()
	m := in.Mappable()
	c := container{
		Command:  strs(m["command"]),
		Env:      strs(m["envs"]),
		Init:     m["init"] == true,
		MemoryMB: num(m["memory"]),
		SwapMB:   num(m["memorySwap"]),
		Restart:  fmt.Sprint(m["restart"]),
	}
	if h, ok := m["healthcheck"].(map[string]any); ok {
		tests := strs(h["tests"])
		c.Health = []string{strings.Join(tests[1:], " "), dur(t, h["interval"]), dur(t, h["timeout"]), fmt.Sprint(num(h["retries"])), dur(t, h["startPeriod"])}
	}
	for _, u := range list(m["uploads"]) {
		c.Files = append(c.Files, fmt.Sprint(u.(map[string]any)["file"]))
	}
	for _, n := range list(m["networksAdvanced"]) {
		c.Aliases = append(c.Aliases, strs(n.(map[string]any)["aliases"])...)
	}
	sort.Strings(c.Files)
	sort.Strings(c.Aliases)
	return c
}

func fromService(t *testing.T, s service) container {
	t.Helper()
	c := container{
		Command: s.Command, Env: s.Environment, Init: s.Init,
		MemoryMB: megabytes(s.MemLimit), SwapMB: megabytes(s.MemswapLimit), Restart: s.Restart,
	}
	if c.Restart == "" {
		c.Restart = "no"
	}
	if h := s.Healthcheck; h != nil {
		c.Health = []string{strings.Join(h.Test[1:], " "), dur(t, h.Interval), dur(t, h.Timeout), fmt.Sprint(h.Retries), dur(t, h.StartPeriod)}
	}
	for _, v := range s.Volumes {
		if parts := strings.Split(v, ":"); strings.HasPrefix(v, "./secrets/") {
			c.Files = append(c.Files, parts[1])
		}
	}
	for _, n := range s.Networks {
		c.Aliases = append(c.Aliases, n.Aliases...)
	}
	sort.Strings(c.Files)
	sort.Strings(c.Aliases)
	return c
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

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func megabytes(s string) int {
	var n int
	fmt.Sscanf(s, "%dm", &n)
	return n
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
