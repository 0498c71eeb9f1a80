// Package gen holds what the benchmark baselines' generators
// (tools/composegen, tools/stackgen) share: tenant names, secret files and
// the router config, rendered as package router renders it.
package gen

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/spec"
)

// CheckMigrations checks a generator's -migrations flag, which takes
// polls:migrations' values.
func CheckMigrations(v string) error {
	if !spec.IsMigrations(v) {
		return fmt.Errorf("-migrations %q: want %q or %q, as polls:migrations", v, spec.MigrationsContainer, spec.MigrationsApp)
	}
	return nil
}

// TenantNames returns t01, t02, ... tN (t100 and on past 99): valid DNS
// labels, sorted as the program sorts tenants.
func TenantNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("t%02d", i+1)
	}
	return names
}

// EnsureSecret returns the password in path, first writing a random one of
// n characters (crypto/rand.Text's upper-case letters and digits, safe in a
// URL unescaped) with mode perm if there is none, so regenerating keeps every
// running tenant's password. Passwords are never printed.
func EnsureSecret(path string, n int, perm fs.FileMode) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return string(b), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	p := rand.Text()
	for len(p) < n {
		p += rand.Text()
	}
	p = p[:n]
	if err := os.WriteFile(path, []byte(p), perm); err != nil {
		return "", err
	}
	return p, nil
}

// RenderRouter renders the router's config with every server inline, with
// the resolver and listen ports package router uses.
func RenderRouter(servers []nginx.Server) ([]byte, error) {
	return nginx.Render(nginx.Config{Servers: servers, Resolver: contract.DockerDNS, Listen: "80", ListenTLS: "443"})
}
