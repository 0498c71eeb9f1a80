package main

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/router"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/subnets"
	"github.com/polls-tenants/polls/tools/internal/gen"
)

// TestTwoTenants ensures the compose file for two tenants has each tenant's
// database, migration and app plus one nginx, gated and networked as the
// Pulumi program does, with nginx.conf byte-identical to the router's.
func TestTwoTenants(t *testing.T) {
	dir := t.TempDir()
	if err := run([]string{"-n", "2", "-out", dir, "-port", "18080", "-project", "bench"}, io.Discard); err != nil {
		t.Fatalf("run: %v", err)
	}
	var c composeFile
	if err := yaml.Unmarshal(readFile(t, filepath.Join(dir, "docker-compose.yml")), &c); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	var names []string
	for name := range c.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"nginx", "t01-app", "t01-db", "t01-migrate", "t02-app", "t02-db", "t02-migrate"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	if got := c.Services["t01-migrate"].DependsOn["t01-db"].Condition; got != "service_healthy" {
		t.Errorf("t01-migrate waits for t01-db to be %q; want service_healthy", got)
	}
	if got := c.Services["t01-app"].DependsOn["t01-migrate"].Condition; got != "service_completed_successfully" {
		t.Errorf("t01-app waits for t01-migrate to be %q; want service_completed_successfully", got)
	}
	if nets := c.Services["t01-db"].Networks; len(nets) != 1 || !c.Networks["t01"].Internal {
		t.Errorf("t01-db networks %v, t01 internal %v; want only the internal t01 network", nets, c.Networks["t01"].Internal)
	}
	if got := c.Services["t02-app"].Networks[edgeNetwork].Aliases; !cmp.Equal(got, []string{"t02"}) {
		t.Errorf("t02-app edge aliases %v; want [t02]", got)
	}
	if got := c.Services["nginx"].Ports; !cmp.Equal(got, []string{"18080:80"}) {
		t.Errorf("nginx ports %v; want [18080:80]", got)
	}

	// Each app on its own port, as the program plans them on a fresh
	// engine (package ports).
	servers := []nginx.Server{
		{Name: "t01", Hosts: []string{"t01.polls.local"}, Upstream: "t01:20000"},
		{Name: "t02", Hosts: []string{"t02.polls.local"}, Upstream: "t02:20001"},
	}
	// The router installs the same servers as one file per tenant; compose
	// gets them inline, from the same template and settings.
	cfg := router.Config(spec.Stack{Domain: spec.DefaultDomain}, contract.RouterConfDir)
	cfg.Include, cfg.Servers = "", servers
	rendered, err := nginx.Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(rendered), string(readFile(t, filepath.Join(dir, "nginx.conf")))); diff != "" {
		t.Errorf("nginx.conf differs from the router's config (-router +composegen):\n%s", diff)
	}

	password := string(readFile(t, filepath.Join(dir, "secrets", "t01-db-password")))
	if len(password) != 32 || strings.Contains(string(readFile(t, filepath.Join(dir, "docker-compose.yml"))), password) {
		t.Errorf("t01's database password is %d characters or shows in the compose file; want 32, only in its file", len(password))
	}
}

// TestSubnets ensures the largest deployment composegen writes gives every
// tenant its own /28 of the default pool, in the order the tenants were
// added (as the program's plan gives a growing stack), labelled with the
// tenant; that the file for 101 tenants keeps every subnet of the file for
// 100 (compose adds t101 in place); and that more tenants than 200 are
// refused.
func TestSubnets(t *testing.T) {
	dir := t.TempDir()
	if err := run([]string{"-n", "200", "-out", dir}, io.Discard); err != nil {
		t.Fatalf("run -n 200: %v", err)
	}
	var c composeFile
	if err := yaml.Unmarshal(readFile(t, filepath.Join(dir, "docker-compose.yml")), &c); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	names := gen.TenantNames(200)
	// The i-th tenant added to an empty pool takes its i-th /28.
	plan := map[string]netip.Prefix{}
	first := netip.MustParsePrefix(spec.DefaultSubnetPool).Addr().As4()
	for i, name := range names {
		a := first
		a[2], a[3] = byte(i*16/256), byte(i*16%256)
		plan[name] = netip.PrefixFrom(netip.AddrFrom4(a), subnets.TenantBits)
	}
	seen := map[string]string{}
	for _, name := range names {
		n := c.Networks[name]
		if n.IPAM == nil || len(n.IPAM.Config) != 1 {
			t.Fatalf("network %s has ipam %+v; want one subnet", name, n.IPAM)
		}
		cfg := n.IPAM.Config[0]
		if want := plan[name]; cfg.Subnet != want.String() || cfg.Gateway != subnets.Gateway(want).String() {
			t.Errorf("network %s: subnet %s gateway %s; want %s gateway %s", name, cfg.Subnet, cfg.Gateway, want, subnets.Gateway(want))
		}
		if other, ok := seen[cfg.Subnet]; ok {
			t.Errorf("networks %s and %s share subnet %s", other, name, cfg.Subnet)
		}
		seen[cfg.Subnet] = name
		if n.Labels["polls.tenant"] != name || !n.Internal {
			t.Errorf("network %s: labels %v, internal %v; want polls.tenant=%s, internal", name, n.Labels, n.Internal, name)
		}
	}
	if got := c.Networks["t01"].IPAM.Config[0].Subnet; got != "10.230.0.0/28" {
		t.Errorf("t01's subnet is %s; want the pool's first /28, 10.230.0.0/28", got)
	}
	subnetsOf := func(n int) map[string]string {
		dir := t.TempDir()
		if err := run([]string{"-n", strconv.Itoa(n), "-out", dir}, io.Discard); err != nil {
			t.Fatalf("run -n %d: %v", n, err)
		}
		var c composeFile
		if err := yaml.Unmarshal(readFile(t, filepath.Join(dir, "docker-compose.yml")), &c); err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, name := range gen.TenantNames(n) {
			m[name] = c.Networks[name].IPAM.Config[0].Subnet
		}
		return m
	}
	hundred, more := subnetsOf(100), subnetsOf(101)
	for name, s := range hundred {
		if more[name] != s {
			t.Errorf("with t101 added, %s's subnet moves from %s to %s; want it kept", name, s, more[name])
		}
	}
	if err := run([]string{"-n", "201", "-out", t.TempDir()}, io.Discard); err == nil || !strings.Contains(err.Error(), "want 1 to 200 tenants") {
		t.Errorf("run -n 201: %v; want an error naming the 1 to 200 bound", err)
	}
}

// TestTaken ensures tenant subnets go around other stacks' tenant networks,
// as the program's plan does.
func TestTaken(t *testing.T) {
	dir := t.TempDir()
	if err := run([]string{"-n", "2", "-out", dir, "-taken", "10.230.0.0/28,10.230.0.32/28"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(readFile(t, filepath.Join(dir, "docker-compose.yml")), &c); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"t01": "10.230.0.16/28", "t02": "10.230.0.48/28"} {
		if got := c.Networks[name].IPAM.Config[0].Subnet; got != want {
			t.Errorf("%s's subnet is %s; want %s", name, got, want)
		}
	}
	if err := run([]string{"-n", "1", "-out", t.TempDir(), "-taken", "10.230.0.0"}, io.Discard); err == nil {
		t.Errorf("run -taken 10.230.0.0 succeeded; want an error (not CIDR)")
	}
}

// TestRegenerateKeepsSecrets ensures adding a tenant keeps the existing
// tenants' passwords, so their running containers keep working.
func TestRegenerateKeepsSecrets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets", "t01-db-password")
	if err := run([]string{"-n", "1", "-out", dir}, io.Discard); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, path)
	if err := run([]string{"-n", "2", "-out", dir}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if after := readFile(t, path); string(after) != string(before) {
		t.Errorf("t01's password changed when t02 was added")
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHealthInterval ensures -health-interval paces both health checks,
// the default keeps the fastest gating, and an interval longer than the
// program's own is refused.
func TestHealthInterval(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		db, app     string
		errContains string
	}{
		{args: nil, db: "2s", app: "3s"},
		{args: []string{"-health-interval", "60s"}, db: "60s", app: "60s"},
		{args: []string{"-health-interval", "3m"}, errContains: "-health-interval 3m0s: want at most 2m"},
	} {
		dir := t.TempDir()
		err := run(append([]string{"-n", "1", "-out", dir}, tc.args...), io.Discard)
		if tc.errContains != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errContains) {
				t.Errorf("%v: error %v; want one containing %q", tc.args, err, tc.errContains)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: run: %v", tc.args, err)
		}
		var c composeFile
		if err := yaml.Unmarshal(readFile(t, filepath.Join(dir, "docker-compose.yml")), &c); err != nil {
			t.Fatalf("parse docker-compose.yml: %v", err)
		}
		if got := c.Services["t01-db"].Healthcheck.Interval; got != tc.db {
			t.Errorf("%v: t01-db interval %s; want %s", tc.args, got, tc.db)
		}
		if got := c.Services["t01-app"].Healthcheck.Interval; got != tc.app {
			t.Errorf("%v: t01-app interval %s; want %s", tc.args, got, tc.app)
		}
	}
}
