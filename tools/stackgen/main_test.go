package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/router"
	"github.com/polls-tenants/polls/spec"
)

// TestTwoTenants ensures the stack file for two tenants has each tenant's
// database, migration and app plus one router, networked as the program
// does, with every secret and the router's config from a file and
// nginx.conf rendered as the router renders a route on Swarm.
func TestTwoTenants(t *testing.T) {
	dir := t.TempDir()
	if err := run([]string{"-n", "2", "-out", dir, "-port", "18080", "-project", "sb", "-nodes", "n2,n1"}, io.Discard); err != nil {
		t.Fatalf("run: %v", err)
	}
	var c stackFile
	if err := yaml.Unmarshal(readFile(t, filepath.Join(dir, "docker-stack.yml")), &c); err != nil {
		t.Fatalf("parse docker-stack.yml: %v", err)
	}
	var names []string
	for name := range c.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"router", "t01-app", "t01-db", "t01-migrate", "t02-app", "t02-db", "t02-migrate"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	for name, s := range c.Services {
		for _, f := range s.Secrets {
			if _, err := os.Stat(filepath.Join(dir, c.Secrets[f.Source].File)); err != nil {
				t.Errorf("%s: secret %s: %v", name, f.Source, err)
			}
		}
	}
	if got := c.Services["t01-db"].Deploy.Placement.Constraints; !cmp.Equal(got, []string{"node.hostname==n1"}) {
		t.Errorf("t01-db constraints %v; want node.hostname==n1 (first in sorted order)", got)
	}
	if got := c.Services["t02-db"].Deploy.Placement.Constraints; !cmp.Equal(got, []string{"node.hostname==n2"}) {
		t.Errorf("t02-db constraints %v; want node.hostname==n2", got)
	}
	r := c.Services["router"]
	if !cmp.Equal(r.Ports, []port{{Target: 80, Published: 18080, Protocol: "tcp", Mode: "host"}}) ||
		!cmp.Equal(r.Deploy.Placement.Constraints, []string{"node.role==manager"}) {
		t.Errorf("router ports %v, constraints %v; want 18080 in host mode, on the manager", r.Ports, r.Deploy.Placement.Constraints)
	}
	if f := c.Configs[r.Configs[0].Source].File; filepath.Clean(f) != "nginx.conf" {
		t.Errorf("router config from %s; want nginx.conf", f)
	}
	if n := c.Networks["t01-net"]; !n.Internal || !n.Attachable || n.Driver != "overlay" {
		t.Errorf("t01-net = %+v; want an internal, attachable overlay", n)
	}

	// The router installs one file per tenant, its server rendered with
	// upstream contract.Upstream(<app service>); the stack gets them inline,
	// from the same template and settings.
	cfg := router.Config(spec.Stack{Domain: spec.DefaultDomain}, contract.RouterConfDir)
	cfg.Include = ""
	for _, tn := range []string{"t01", "t02"} {
		cfg.Servers = append(cfg.Servers, nginx.Server{Name: tn, Hosts: []string{tn + ".polls.local"}, Upstream: contract.Upstream(tn+"-app", contract.AppPort)})
	}
	rendered, err := nginx.Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(rendered), string(readFile(t, filepath.Join(dir, "nginx.conf")))); diff != "" {
		t.Errorf("nginx.conf differs from the router's config (-router +stackgen):\n%s", diff)
	}
	if !strings.Contains(string(rendered), "http://t02-app:8000;") {
		t.Errorf("nginx.conf does not send t02 to t02-app:8000")
	}

	password := string(readFile(t, filepath.Join(dir, "secrets", "t01-postgres-password")))
	if len(password) != 32 || strings.Contains(string(readFile(t, filepath.Join(dir, "docker-stack.yml"))), password) {
		t.Errorf("t01's database password is %d characters or shows in the stack file; want 32, only in its file", len(password))
	}
}

// TestRegenerateKeepsSecrets ensures a regenerated file (a release names a
// new image) keeps every secret file as it was: Docker secrets cannot be
// changed in place, and the data was initialised with the old password.
func TestRegenerateKeepsSecrets(t *testing.T) {
	dir := t.TempDir()
	args := []string{"-n", "2", "-out", dir, "-nodes", "n1"}
	if err := run(args, io.Discard); err != nil {
		t.Fatal(err)
	}
	files := []string{"t01-postgres-password", "t01-admin-password", "t01-database-url"}
	var before []string
	for _, f := range files {
		before = append(before, string(readFile(t, filepath.Join(dir, "secrets", f))))
	}
	if err := run(append(args, "-app-image", "other:2"), io.Discard); err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		if after := string(readFile(t, filepath.Join(dir, "secrets", f))); after != before[i] {
			t.Errorf("%s changed on regeneration", f)
		}
	}
}

// TestBadFlags ensures missing nodes and out-of-range values are refused.
func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-n", "2", "-out", t.TempDir()},
		{"-n", "0", "-out", t.TempDir(), "-nodes", "n1"},
		{"-n", "2", "-out", t.TempDir(), "-nodes", "n1", "-project", "Bad Name"},
		{"-n", "2", "-nodes", "n1"},
	} {
		if err := run(args, io.Discard); err == nil {
			t.Errorf("run %v succeeded; want an error", args)
		}
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
