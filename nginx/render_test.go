package nginx_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/nginx/nginxtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// cases are the router configs covered by golden files and by nginx -t.
var cases = []struct {
	name string
	cfg  Config
}{
	{"zero-tenants", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443"}},
	{"two-tenants", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Servers: []Server{
		{Name: "thor", Hosts: []string{"thor.polls.local"}, Upstream: "thor:8000"},
		{Name: "potter", Hosts: []string{"potter.polls.local", "polls.potter.example"}, Upstream: "potter:8000"},
	}}},
	{"tls", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", TLS: &TLS{CertificatePath: "/etc/nginx/conf.d/tls/cert.pem", KeyPath: "/etc/nginx/conf.d/tls/key.pem"}, Servers: []Server{
		{Name: "thor", Hosts: []string{"thor.polls.example.com"}, Upstream: "thor:8000"},
		{Name: "potter", Hosts: []string{"potter.polls.example.com"}, Upstream: "potter:8000"},
	}}},
	{"include", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Include: "/etc/nginx/conf.d/tenants/*.conf"}},
	{"acme-include", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Include: "/etc/nginx/conf.d/tenants/*.conf", ACME: &acme443}},
	{"acme", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", ACME: &acme443, Servers: []Server{
		{Name: "thor", Hosts: []string{"thor.polls.example.com"}, Upstream: "thor:8000"},
		{Name: "potter", Hosts: []string{"potter.polls.example.com", "polls.potter.example"}, Upstream: "potter:8000"},
	}}},
	{"metrics", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Metrics: metrics, Servers: []Server{
		{Name: "thor", Hosts: []string{"thor.polls.local"}, Upstream: "thor:8000"},
		{Name: "potter", Hosts: []string{"potter.polls.local", "polls.potter.example"}, Upstream: "potter:8000"},
	}}},
	{"metrics-acme-include", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Metrics: metrics, Include: "/etc/nginx/conf.d/tenants/*.conf", ACME: &acme443}},
	{"metrics-tls-include", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Metrics: metrics, Include: "/etc/nginx/conf.d/tenants/*.conf",
		TLS: &TLS{CertificatePath: "/etc/nginx/conf.d/tls/cert.pem", KeyPath: "/etc/nginx/conf.d/tls/key.pem"}}},
}

// acme443 and acme8443 are the companion's directories, with HTTPS on the
// default port and on another one.
var (
	acme443  = ACME{CertDir: "/var/lib/polls-acme/live/certs", Webroot: "/var/lib/polls-acme/live/webroot", HTTPSPort: 443}
	acme8443 = ACME{CertDir: "/var/lib/polls-acme/live/certs", Webroot: "/var/lib/polls-acme/live/webroot", HTTPSPort: 8443}
)

// metrics is the router's metrics socket.
var metrics = &Metrics{Socket: "/run/polls-metrics/nginx.sock", NoTenant: "_none"}

// serverCases are single tenants' files, as RenderServer writes them.
var serverCases = []struct {
	name   string
	cfg    Config
	server Server
}{
	{"server-thor", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443"},
		Server{Name: "thor", Hosts: []string{"thor.polls.local", "polls.thor.example"}, Upstream: "thor-app-1a2b3c4:8000"}},
	{"server-thor-tls", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", TLS: &TLS{CertificatePath: "/etc/nginx/conf.d/tls/cert.pem", KeyPath: "/etc/nginx/conf.d/tls/key.pem"}},
		Server{Name: "thor", Hosts: []string{"thor.polls.example.com"}, Upstream: "thor-app-1a2b3c4:8000"}},
	{"server-thor-acme", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", ACME: &acme8443},
		Server{Name: "thor", Hosts: []string{"thor.polls.example.com", "polls.thor.example"}, Upstream: "thor-app-1a2b3c4:8000"}},
	{"server-thor-metrics", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Metrics: metrics},
		Server{Name: "thor", Hosts: []string{"thor.polls.local", "polls.thor.example"}, Upstream: "thor-app-1a2b3c4:8000"}},
	{"server-thor-acme-metrics", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", ACME: &acme443, Metrics: metrics},
		Server{Name: "thor", Hosts: []string{"thor.polls.example.com"}, Upstream: "thor-app-1a2b3c4:8000"}},
	{"server-thor-tls-metrics", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Metrics: metrics, TLS: &TLS{CertificatePath: "/etc/nginx/conf.d/tls/cert.pem", KeyPath: "/etc/nginx/conf.d/tls/key.pem"}},
		Server{Name: "thor", Hosts: []string{"thor.polls.example.com"}, Upstream: "thor-app-1a2b3c4:8000"}},
}

// TestGoldenServer ensures one tenant's file matches testdata/ and is
// exactly that tenant's part of the all-in-one rendering.
func TestGoldenServer(t *testing.T) {
	for _, tc := range serverCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderServer(tc.cfg, tc.server)
			if err != nil {
				t.Fatalf("RenderServer: %v", err)
			}
			checkGolden(t, "RenderServer", tc.name, got)
			cfg := tc.cfg
			cfg.Servers = []Server{tc.server}
			whole, err := Render(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasSuffix(whole, got) {
				t.Errorf("RenderServer(%s) is not the tail of Render with that one server:\n%s", tc.name, whole)
			}
		})
	}
}

// checkGolden compares got with testdata/<name>.conf, rewriting the file
// first under -update.
func checkGolden(t *testing.T, fn, name string, got []byte) {
	t.Helper()
	golden := filepath.Join("testdata", name+".conf")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run go test ./nginx -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s(%s) differs from %s; got:\n%s", fn, name, golden, got)
	}
}

// TestGolden ensures the rendered config matches the reviewed files in
// testdata/ byte for byte (run with -update to rewrite them).
func TestGolden(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.cfg)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			checkGolden(t, "Render", tc.name, got)
		})
	}
}

// TestRenderDeterministic ensures server order does not depend on input order.
func TestRenderDeterministic(t *testing.T) {
	c := cases[1].cfg
	a, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Servers = []Server{c.Servers[1], c.Servers[0]}
	b, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("output depends on server order:\n%s\n---\n%s", a, b)
	}
}

// TestRenderRejectsInjection ensures no value can smuggle nginx syntax in.
func TestRenderRejectsInjection(t *testing.T) {
	ok := Server{Name: "thor", Hosts: []string{"thor.polls.local"}, Upstream: "thor:8000"}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"host with semicolon", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Servers: []Server{{Name: "thor", Hosts: []string{"a; return 200"}, Upstream: "thor:8000"}}}, `host "a; return 200"`},
		{"host with brace", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Servers: []Server{{Name: "thor", Hosts: []string{"a}"}, Upstream: "thor:8000"}}}, "host"},
		{"name with space", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Servers: []Server{{Name: "th or", Hosts: []string{"a"}, Upstream: "thor:8000"}}}, "server name"},
		{"upstream with variable", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Servers: []Server{{Name: "thor", Hosts: []string{"a"}, Upstream: "$host:80"}}}, "upstream"},
		{"no hosts", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Servers: []Server{{Name: "thor", Upstream: "thor:8000"}}}, "no host names"},
		{"duplicate host", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", Servers: []Server{ok, {Name: "potter", Hosts: []string{"thor.polls.local"}, Upstream: "potter:8000"}}}, "claimed by servers"},
		{"resolver", Config{Resolver: "127.0.0.11; include /etc/passwd", Listen: "80"}, "resolver"},
		{"tls path", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", TLS: &TLS{CertificatePath: "/a b", KeyPath: "/k"}}, "TLS paths"},
		{"acme path", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", ACME: &ACME{CertDir: "/a;b", Webroot: "/w", HTTPSPort: 443}}, "ACME paths"},
		{"acme port", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", ACME: &ACME{CertDir: "/c", Webroot: "/w"}}, "ACME HTTPS port"},
		{"acme with tls", Config{Resolver: "127.0.0.11", Listen: "80", ListenTLS: "443", ACME: &acme443, TLS: &TLS{CertificatePath: "/c", KeyPath: "/k"}}, "exclusive"},
		{"metrics socket", Config{Resolver: "127.0.0.11", Listen: "80", Metrics: &Metrics{Socket: "/run/x.sock polls_metrics; include /etc/passwd", NoTenant: "_none"}}, "metrics socket"},
		{"no-tenant label a tenant's", Config{Resolver: "127.0.0.11", Listen: "80", Metrics: &Metrics{Socket: "/run/x.sock", NoTenant: "thor"}}, "no-tenant label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Render error = %v; want one containing %q", err, tt.want)
			}
		})
	}
}

// TestNginxAcceptsConfig ensures real nginx (`nginx -t`) accepts every
// rendered config inside an http context like the official image's, the
// ACME ones before any certificate exists.
func TestNginxAcceptsConfig(t *testing.T) {
	nginxtest.Binary(t)
	for _, sc := range serverCases {
		cases = append(cases, struct {
			name string
			cfg  Config
		}{sc.name, Config{Resolver: sc.cfg.Resolver, Listen: sc.cfg.Listen, ListenTLS: sc.cfg.ListenTLS, TLS: sc.cfg.TLS, ACME: sc.cfg.ACME, Servers: []Server{sc.server}}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg.TLS != nil {
				cfg.TLS = nginxtest.WriteCertificate(t, t.TempDir(), "polls.example.com")
			}
			rendered, err := Render(cfg)
			if err != nil {
				t.Fatal(err)
			}
			nginxtest.Check(t, rendered)
		})
	}
}
