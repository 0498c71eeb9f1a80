package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/nginx/nginxtest"
	"github.com/polls-tenants/polls/router"
	"github.com/polls-tenants/polls/spec"
)

// prodValues returns Pulumi.prod.yaml's values with a fresh certificate and
// key in place of the committed ones (its key is encrypted with a passphrase
// tests do not have), after checking the committed key is encrypted and the
// committed certificate is one.
func prodValues(t *testing.T) (map[string]string, string) {
	t.Helper()
	values, secure := stackValues(t, "Pulumi.prod.yaml")
	if !secure["tlsKey"] {
		t.Fatal("Pulumi.prod.yaml: polls:tlsKey must be an encrypted (secure) value")
	}
	block, _ := pem.Decode([]byte(values["tlsCertificate"]))
	if block == nil {
		t.Fatal("Pulumi.prod.yaml: polls:tlsCertificate is not PEM")
	}
	committed, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !slices.Contains(committed.DNSNames, "*."+values["domain"]) {
		t.Fatalf("Pulumi.prod.yaml: certificate does not cover *.%s: %v", values["domain"], err)
	}
	cert, key := nginxtest.SelfSigned(t, values["domain"])
	values["tlsCertificate"], values["tlsKey"] = string(cert), string(key)
	return values, string(key)
}

// TestProdStack ensures the prod stack validates with TLS on ports 80 and
// 443, its own Docker host and memory limits, and that real nginx accepts
// its router config, which redirects HTTP to HTTPS.
func TestProdStack(t *testing.T) {
	values, _ := prodValues(t)
	s, err := spec.Parse(values)
	if err != nil {
		t.Fatalf("Pulumi.prod.yaml: %v", err)
	}
	if s.TLS == nil || s.HTTPPort != 80 || s.HTTPSPort != 443 || s.AppMemoryMB == 0 || s.DBMemoryMB == 0 ||
		!strings.HasPrefix(s.DockerHost, "ssh://") || s.Domain == spec.DefaultDomain {
		t.Errorf("prod = TLS %v, ports %d/%d, memory %d/%d, host %q, domain %q; want TLS, 80/443, limits, an ssh:// host, its own domain",
			s.TLS != nil, s.HTTPPort, s.HTTPSPort, s.AppMemoryMB, s.DBMemoryMB, s.DockerHost, s.Domain)
	}
	if got := s.URL("thor." + s.Domain); got != "https://thor.polls.example.com/" {
		t.Errorf("thor's URL = %q; want https://thor.polls.example.com/", got)
	}

	dir := t.TempDir()
	var servers []nginx.Server
	for _, tn := range s.Tenants {
		servers = append(servers, nginx.Server{Name: tn.Name, Hosts: tn.ServerNames(s.Domain), Upstream: tn.Name + "-app-1a2b3c4:8000"})
	}
	files, err := router.Files(s, servers, dir)
	if err != nil {
		t.Fatal(err)
	}
	var conf []byte
	var all strings.Builder
	for _, f := range files {
		path := filepath.Join(dir, f.Name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(f.Content), 0o600); err != nil {
			t.Fatal(err)
		}
		if f.Name == "polls.conf" {
			conf = []byte(f.Content)
		}
		all.WriteString(f.Content)
		if strings.HasSuffix(f.Name, ".key") != f.Secret {
			t.Errorf("router file %s: secret = %v; want only the key secret", f.Name, f.Secret)
		}
	}
	for _, want := range []string{"listen 443 ssl default_server;", "listen 443 ssl;", "return 301 https://$host$request_uri;", "server_name thor.polls.example.com;"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("prod router config lacks %q:\n%s", want, all.String())
		}
	}
	nginxtest.Check(t, conf)
}

// TestProdStackMocks ensures the prod program publishes 80 and 443, sends
// the key only as a secret, targets the stack's Docker host and limits
// memory.
func TestProdStackMocks(t *testing.T) {
	values, key := prodValues(t)
	m := newMocks()
	if err := run(t, m, values, "polls:tlsKey"); err != nil {
		t.Fatalf("program: %v", err)
	}
	var ports []string
	for _, p := range m.All()["docker:index/container:Container::router"]["ports"].ArrayValue() {
		o := p.ObjectValue()
		ports = append(ports, fmt.Sprintf("%v->%v", o["internal"].NumberValue(), o["external"].NumberValue()))
	}
	if got := strings.Join(ports, ","); got != "80->80,443->443" {
		t.Errorf("router ports = %s; want 80->80 and 443->443", got)
	}
	if host := m.All()["pulumi:providers:docker::docker"]["host"]; !host.IsString() || host.StringValue() != values["dockerHost"] {
		t.Errorf("docker provider host = %v; want %s", host, values["dockerHost"])
	}
	if mem := m.All()["docker:index/container:Container::thor-app"]["memory"]; !mem.IsNumber() || mem.NumberValue() != 512 {
		t.Errorf("thor's app memory = %v; want 512", mem)
	}
	keyBody := strings.Split(strings.TrimSpace(key), "\n")[1]
	var keyUploads int
	for name, in := range m.All() {
		walkPlain(resource.NewObjectProperty(in), func(s string) {
			if strings.Contains(s, keyBody) {
				t.Errorf("%s carries the TLS key in a plain input", name)
			}
		})
	}
	for _, u := range m.All()["docker:index/container:Container::router-tls"]["uploads"].ArrayValue() {
		o := u.ObjectValue()
		if strings.HasSuffix(o["file"].StringValue(), ".key") {
			keyUploads++
			if !o["content"].IsSecret() {
				t.Error("the TLS key upload is not secret")
			}
		}
	}
	if keyUploads != 1 {
		t.Errorf("TLS key uploads by router-tls = %d; want 1", keyUploads)
	}
	// The config's uploads hold no secret, so that a preview shows the
	// tenants' routes, not [secret].
	config := m.All()["docker:index/container:Container::router-config"]
	if !config.HasValue("uploads") || config["uploads"].ContainsSecrets() {
		t.Errorf("router-config uploads = %v; want them plain", config["uploads"])
	}
	if deps := strings.Join(m.Requests()["docker:index/container:Container::router-config"].GetDependencies(), " "); !strings.Contains(deps, "::router-tls") {
		t.Errorf("router-config depends on %q; want the certificate's installer, router-tls", deps)
	}
}
