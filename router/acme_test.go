package router

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/polls-tenants/polls/spec"
)

// TestCompanionArgs ensures the companion's command line carries the ACME
// settings and the DNS credentials only as _FILE variables naming secret
// files, never as values.
func TestCompanionArgs(t *testing.T) {
	s := spec.Stack{Domain: "polls.example", ACME: &spec.ACME{Email: "ops@polls.example", Directory: spec.LetsEncryptStaging,
		CARoot: "ROOT", DNSProvider: "cloudflare", DNSCredentials: map[string]string{"CF_DNS_API_TOKEN": "t0ken"},
		DNSResolvers: []string{"1.1.1.1:53", "9.9.9.9:53"}, RenewBefore: 30 * 24 * time.Hour}}
	cmd, env, files := companionArgs(s)
	line := strings.Join(cmd, " ")
	for _, want := range []string{"acme run", "--directory " + spec.LetsEncryptStaging, "--domain polls.example", "--dns-provider cloudflare",
		"--dns-resolvers 1.1.1.1:53,9.9.9.9:53", "--ca-root /run/secrets/acme/ca-root.pem", "--renew-before 720h0m0s", "--hosts /etc/nginx/conf.d/acme.hosts",
		"--self-check http://127.0.0.1:80"} {
		if !strings.Contains(line, want) {
			t.Errorf("command %q lacks %q", line, want)
		}
	}
	if strings.Contains(line+strings.Join(env, " "), "t0ken") {
		t.Errorf("a credential's value is in the command or environment: %q %q", line, env)
	}
	if len(env) != 1 || env[0] != "CF_DNS_API_TOKEN_FILE=/run/secrets/acme/dns/CF_DNS_API_TOKEN" || files["/run/secrets/acme/dns/CF_DNS_API_TOKEN"] != "t0ken" || files["/run/secrets/acme/ca-root.pem"] != "ROOT" {
		t.Errorf("env %q, files %v; want the credential delivered as a file", env, files)
	}
}

// TestFailingLines ensures each failing host becomes one line naming the
// tenant, the host, whether a certificate is still served, since when and
// the CA's error, and that only the asked-for tenants are reported.
func TestFailingLines(t *testing.T) {
	var st acmeStatus
	raw := `{"hosts":[
	 {"host":"a.polls.example","tenant":"a","state":"valid","serial":"1f"},
	 {"host":"shop.example.org","tenant":"b","state":"failed","error":"urn:ietf:params:acme:error:rejectedIdentifier :: blocked","failingSince":"2026-05-01T10:00:00Z","attempts":2,"nextAttempt":"2026-05-01T10:15:00Z"},
	 {"host":"b.polls.example","tenant":"b","state":"valid","serial":"2e","error":"timeout","failingSince":"2026-05-01T09:00:00Z","attempts":1,"nextAttempt":"2026-05-01T09:05:00Z"}]}`
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatal(err)
	}
	lines := st.failing(nil)
	if len(lines) != 2 {
		t.Fatalf("failing = %q; want 2 lines", lines)
	}
	if want := "tenant b: host shop.example.org has no certificate: failing since 2026-05-01T10:00:00Z (2 attempts, next at 2026-05-01T10:15:00Z): urn:ietf:params:acme:error:rejectedIdentifier :: blocked"; lines[0] != want {
		t.Errorf("line = %q; want %q", lines[0], want)
	}
	if !strings.Contains(lines[1], "keeps its certificate (serial 2e), but its renewal fails") {
		t.Errorf("line = %q; want it to say the certificate is still served", lines[1])
	}
	if got := st.failing(map[string]bool{"a": true}); len(got) != 0 {
		t.Errorf("failing(only a) = %q; want none", got)
	}
}

// TestACMEHostsFile ensures acme.hosts lists every host with its tenant,
// sorted, one per line.
func TestACMEHostsFile(t *testing.T) {
	s := spec.Stack{Domain: "polls.example", Tenants: []spec.Tenant{{Name: "thor", Hosts: []string{"a.example.org"}}, {Name: "potter"}}}
	if got, want := ACMEHostsFile(s), "a.example.org thor\npotter.polls.example potter\nthor.polls.example thor\n"; got != want {
		t.Errorf("ACMEHostsFile = %q; want %q", got, want)
	}
}
