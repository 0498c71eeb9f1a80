package spec

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/polls-tenants/polls/nginx/nginxtest"
)

// prefixes compares netip.Prefix values by value.
var prefixes = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

// TestParseValid ensures accepted config becomes the expected typed Stack,
// with defaults filled in and tenants sorted by name.
func TestParseValid(t *testing.T) {
	defaults := Stack{
		Tenants: []Tenant{}, Domain: "polls.local", HTTPPort: 8080, HTTPSPort: 8443,
		PostgresImage: "postgres:17", NginxImage: "nginx:1", AppBuildArgs: map[string]string{},
		AppMemoryMB: 256, DBMemoryMB: 512, AdminUser: "admin",
		SubnetPool: netip.MustParsePrefix("10.230.0.0/16"), Platform: "docker", AppBuilder: "auto",
		Migrations: "container",
		Backup:     &Backup{Repository: Repository{Kind: "local", Path: "/var/lib/polls-backups"}, Schedule: "daily", Interval: 24 * time.Hour, KeepDays: 7, KeepWeeks: 4},
	}
	with := func(f func(*Stack)) Stack {
		s := defaults
		s.AppBuildArgs = map[string]string{}
		b := *defaults.Backup
		s.Backup = &b
		f(&s)
		return s
	}
	tests := []struct {
		name   string
		values map[string]string
		want   Stack
	}{
		{"no config: zero tenants, defaults", nil, defaults},
		{"empty tenant list", map[string]string{"tenants": "[]"}, defaults},
		{"names, sorted", map[string]string{"tenants": `["thor","potter"]`},
			with(func(s *Stack) { s.Tenants = []Tenant{{Name: "potter"}, {Name: "thor"}} })},
		{"object with settings", map[string]string{
			"tenants": `["thor",{"name":"potter","hosts":["polls.potter.example"],"memoryMb":128,"image":"polls-app:v1"}]`,
			"domain":  "example.com", "httpPort": "80", "appMemoryMb": "0",
			"postgresImage": "polls-local/postgres:15", "nginxImage": "registry.example.com:5000/nginx:1.27@sha256:" + strings.Repeat("a", 64),
			"appBuildArgs": `{"GOPROXY":"http://127.0.0.1:3001","GO_IMAGE":"polls-local/golang:1.26"}`, "appBuildNetwork": "host",
			"appBuilder": "legacy", "dockerHost": "ssh://deploy@prod-1", "subnetPool": "192.168.240.0/20",
			"migrations": "app",
		}, with(func(s *Stack) {
			s.SubnetPool = netip.MustParsePrefix("192.168.240.0/20")
			s.Tenants = []Tenant{{Name: "potter", Hosts: []string{"polls.potter.example"}, MemoryMB: 128, Image: "polls-app:v1"}, {Name: "thor"}}
			s.Domain, s.HTTPPort, s.AppMemoryMB = "example.com", 80, 0
			s.PostgresImage, s.NginxImage = "polls-local/postgres:15", "registry.example.com:5000/nginx:1.27@sha256:"+strings.Repeat("a", 64)
			s.AppBuildArgs = map[string]string{"GOPROXY": "http://127.0.0.1:3001", "GO_IMAGE": "polls-local/golang:1.26"}
			s.AppBuildNetwork, s.DockerHost = "host", "ssh://deploy@prod-1"
			s.AppBuilder, s.Migrations = "legacy", "app"
		})},
		{"map form, sorted, settings or none", map[string]string{"tenants": `{"thor":null,"potter":{"hosts":["polls.potter.example"],"memoryMb":128},"hermione":{}}`},
			with(func(s *Stack) {
				s.Tenants = []Tenant{{Name: "hermione"}, {Name: "potter", Hosts: []string{"polls.potter.example"}, MemoryMB: 128}, {Name: "thor"}}
			})},
		{"empty map", map[string]string{"tenants": `{}`}, defaults},
		{"build args as `config set --path` stores numbers", map[string]string{"appBuildArgs": `{"VERSION":2,"DEBUG":true,"GOSUMDB":"off"}`},
			with(func(s *Stack) { s.AppBuildArgs = map[string]string{"VERSION": "2", "DEBUG": "true", "GOSUMDB": "off"} })},
		{"map values as `pulumi config set --path` stores them", map[string]string{"tenants": `{"thor":"","potter":"{}","hermione":"{\"memoryMb\":64}"}`},
			with(func(s *Stack) {
				s.Tenants = []Tenant{{Name: "hermione", MemoryMB: 64}, {Name: "potter"}, {Name: "thor"}}
			})},
		{"63-character name", map[string]string{"tenants": `["` + strings.Repeat("a", 63) + `"]`},
			with(func(s *Stack) { s.Tenants = []Tenant{{Name: strings.Repeat("a", 63)}} })},
		{"image ID override", map[string]string{"tenants": `[{"name":"a1","image":"sha256:` + strings.Repeat("0", 64) + `"}]`},
			with(func(s *Stack) { s.Tenants = []Tenant{{Name: "a1", Image: "sha256:" + strings.Repeat("0", 64)}} })},
		{"swarm: registry, credentials, replicas and a pinned node", map[string]string{
			"platform": "swarm", "registry": "10.231.0.1:5000/polls", "registryUsername": "polls", "registryPassword": "s3cret",
			"tenants": `{"thor":{"replicas":3,"node":"node-2"},"potter":{}}`,
		}, with(func(s *Stack) {
			s.Platform, s.Registry = "swarm", "10.231.0.1:5000/polls"
			s.RegistryAuth = &RegistryAuth{Username: "polls", Password: "s3cret"}
			s.Tenants = []Tenant{{Name: "potter"}, {Name: "thor", Replicas: 3, Node: "node-2"}}
		})},
		{"swarm: registry without credentials", map[string]string{"platform": "swarm", "registry": "localhost:5000"},
			with(func(s *Stack) { s.Platform, s.Registry = "swarm", "localhost:5000" })},
		{"backups off", map[string]string{"backups": "false", "backupRepository": "/var/lib/polls-backups"},
			with(func(s *Stack) { s.Backup = nil })},
		{"backups to sftp, hourly, with a key", map[string]string{
			"backupRepository": "sftp://backup@10.232.0.2:2222/srv/polls/", "backupSshKey": sshKey, "backupSshKnownHosts": "[10.232.0.2]:2222 ssh-ed25519 AAAA",
			"backupSchedule": "hourly", "backupKeepDays": "2", "backupKeepWeeks": "0", "backupKey": "0123456789abcdefXYZ",
		}, with(func(s *Stack) {
			s.Backup = &Backup{
				Repository: Repository{Kind: "sftp", User: "backup", Host: "10.232.0.2", Port: 2222, Path: "/srv/polls", SSHKey: sshKey, KnownHosts: "[10.232.0.2]:2222 ssh-ed25519 AAAA"},
				Schedule:   "hourly", Interval: time.Hour, KeepDays: 2, KeepWeeks: 0, Key: "0123456789abcdefXYZ",
			}
		})},
		{"restores: in place to a time, a copy to latest", map[string]string{"tenants": `{"thor":{"restore":"2026-11-01T10:00:00Z"},"thor-copy":{"restoreFrom":"thor","restore":"latest"}}`},
			with(func(s *Stack) {
				s.Tenants = []Tenant{{Name: "thor", Restore: "2026-11-01T10:00:00Z"}, {Name: "thor-copy", Restore: "latest", RestoreFrom: "thor"}}
			})},
		{"a tenant's passwords rotated", map[string]string{"tenants": `{"thor":{"rotation":2}}`},
			with(func(s *Stack) { s.Tenants = []Tenant{{Name: "thor", Rotation: 2}} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.values)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, prefixes); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTenantFormsAgree ensures the list and map forms of polls:tenants give
// the same Stack, so converting one into the other changes no resource.
func TestTenantFormsAgree(t *testing.T) {
	list, err := Parse(map[string]string{"tenants": `["thor",{"name":"potter","hosts":["polls.potter.example"],"image":"polls-app:v1"}]`})
	if err != nil {
		t.Fatalf("Parse list: %v", err)
	}
	byName, err := Parse(map[string]string{"tenants": `{"potter":{"hosts":["polls.potter.example"],"image":"polls-app:v1"},"thor":{}}`})
	if err != nil {
		t.Fatalf("Parse map: %v", err)
	}
	if diff := cmp.Diff(list, byName, prefixes); diff != "" {
		t.Errorf("list and map forms differ (-list +map):\n%s", diff)
	}
}

// TestParseInvalid ensures every bad value is rejected with a message that
// names the key, the tenant where there is one, and what is accepted.
func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]string
		want   []string // substrings of the error
	}{
		{"upper-case name", map[string]string{"tenants": `["Thor"]`}, []string{"polls:tenants[0]", `"Thor"`, "lower-case DNS label", "a-z, 0-9"}},
		{"leading hyphen", map[string]string{"tenants": `["-thor"]`}, []string{"polls:tenants[0]", `"-thor"`}},
		{"trailing hyphen", map[string]string{"tenants": `["thor-"]`}, []string{`"thor-"`, "not starting or ending"}},
		{"64 characters", map[string]string{"tenants": `["` + strings.Repeat("a", 64) + `"]`}, []string{"1-63 characters"}},
		{"empty name", map[string]string{"tenants": `[""]`}, []string{"polls:tenants[0]", `name ""`}},
		{"dot in name", map[string]string{"tenants": `["thor.evil"]`}, []string{`"thor.evil"`}},
		{"nginx injection in name", map[string]string{"tenants": `["thor;}server{"]`}, []string{"polls:tenants[0]", "lower-case DNS label"}},
		{"duplicate", map[string]string{"tenants": `["thor","potter","thor"]`}, []string{"polls:tenants", `"thor" is listed twice`}},
		{"duplicate as object", map[string]string{"tenants": `["thor",{"name":"thor"}]`}, []string{`"thor" is listed twice`}},
		{"host claimed by two tenants", map[string]string{"tenants": `[{"name":"thor","hosts":["polls.example"]},{"name":"potter","hosts":["polls.example"]}]`},
			[]string{"polls:tenants", `host "polls.example" is already served by tenant "potter"`}},
		{"extra host is another tenant's name", map[string]string{"tenants": `["thor",{"name":"potter","hosts":["thor.polls.local"]}]`},
			[]string{`"thor.polls.local" is already served by tenant "potter"`}},
		{"host listed twice by one tenant", map[string]string{"tenants": `[{"name":"thor","hosts":["a.example","a.example"]}]`}, []string{`"a.example" is listed twice for this tenant`}},
		{"host with injection", map[string]string{"tenants": `[{"name":"thor","hosts":["a.example; return 200"]}]`},
			[]string{"polls:tenants[0] (\"thor\")", "not a valid lower-case host name"}},
		{"host wildcard", map[string]string{"tenants": `[{"name":"thor","hosts":["*.example"]}]`}, []string{"no wildcards"}},
		{"host with port", map[string]string{"tenants": `[{"name":"thor","hosts":["a.example:80"]}]`}, []string{`"a.example:80"`}},
		{"host with quote", map[string]string{"tenants": `[{"name":"thor","hosts":["a\"b"]}]`}, []string{"not a valid lower-case host name"}},
		{"unknown tenant field", map[string]string{"tenants": `[{"name":"thor","memroyMb":64}]`},
			[]string{"polls:tenants[0] (\"thor\")", `unknown field "memroyMb"`, "hosts, memoryMb, image, replicas, node"}},
		{"object without name", map[string]string{"tenants": `[{"hosts":["a.example"]}]`}, []string{"polls:tenants[0]", `no "name"`}},
		{"hosts not a list", map[string]string{"tenants": `[{"name":"thor","hosts":"a.example"}]`}, []string{`field "hosts" must be a list of host names`}},
		{"memory too small", map[string]string{"tenants": `[{"name":"thor","memoryMb":2}]`}, []string{`("thor"): memoryMb 2`, "6 or more"}},
		{"bad image override", map[string]string{"tenants": `[{"name":"thor","image":"Polls App"}]`}, []string{`image "Polls App"`}},
		{"tenant neither string nor object", map[string]string{"tenants": `[42]`}, []string{"polls:tenants[0]", "neither a tenant name nor an object"}},
		{"build arg a list", map[string]string{"appBuildArgs": `{"VERSION":[1]}`}, []string{"polls:appBuildArgs:", `"VERSION" must be a string`}},
		{"pool not CIDR", map[string]string{"subnetPool": "10.230.0.0"}, []string{"polls:subnetPool:", "CIDR notation"}},
		{"pool host bits", map[string]string{"subnetPool": "10.230.1.0/16"}, []string{"polls:subnetPool:", "host bits", "10.230.0.0/16"}},
		{"pool too small for the tenants", map[string]string{"subnetPool": "10.230.0.0/27", "tenants": `["a","b","c"]`}, []string{"polls:subnetPool: 10.230.0.0/27 holds 2 tenant subnets", "fewer than the 3 tenants"}},
		{"tenants neither list nor map", map[string]string{"tenants": `thor`}, []string{"polls:tenants:", "neither a list nor a map"}},
		{"map value not an object", map[string]string{"tenants": `{"name":"thor"}`}, []string{"polls:tenants.name:", "not an object of settings"}},
		{"map key not a label", map[string]string{"tenants": `{"Thor":{}}`}, []string{"polls:tenants: key \"Thor\"", "lower-case DNS label"}},
		{"map value with a name", map[string]string{"tenants": `{"thor":{"name":"thor"}}`}, []string{"polls:tenants.thor:", "the key is the name"}},
		{"map value bad field", map[string]string{"tenants": `{"thor":{"memoryMb":"lots","colour":"red"}}`}, []string{"polls:tenants.thor: field \"memoryMb\" must be", "polls:tenants.thor: unknown field \"colour\""}},
		{"map host claimed twice", map[string]string{"tenants": `{"thor":{"hosts":["a.example"]},"potter":{"hosts":["a.example"]}}`}, []string{"host \"a.example\" is already served by tenant"}},
		{"domain invalid", map[string]string{"domain": "polls.local;"}, []string{"polls:domain", "not a valid lower-case host name"}},
		{"domain upper-case", map[string]string{"domain": "Polls.Local"}, []string{"polls:domain"}},
		{"domain empty", map[string]string{"domain": ""}, []string{"polls:domain"}},
		{"port zero", map[string]string{"httpPort": "0"}, []string{"polls:httpPort: 0 is out of range", "1 to 65535"}},
		{"port too big", map[string]string{"httpPort": "65536"}, []string{"polls:httpPort: 65536"}},
		{"port not a number", map[string]string{"httpPort": "http"}, []string{`polls:httpPort: "http" is not a whole number`}},
		{"https port out of range", map[string]string{"httpsPort": "-1"}, []string{"polls:httpsPort"}},
		{"unknown key", map[string]string{"tenant": `["thor"]`}, []string{"polls:tenant: unknown key", "pulumi config rm polls:tenant"}},
		{"bad image", map[string]string{"postgresImage": "postgres 17"}, []string{"polls:postgresImage", `"postgres 17"`}},
		{"bad build args", map[string]string{"appBuildArgs": `["GOPROXY"]`}, []string{"polls:appBuildArgs: must be a map"}},
		{"bad build arg name", map[string]string{"appBuildArgs": `{"GO PROXY":"x"}`}, []string{`polls:appBuildArgs: "GO PROXY"`}},
		{"bad build network", map[string]string{"appBuildNetwork": "host;rm"}, []string{"polls:appBuildNetwork"}},
		{"unknown builder", map[string]string{"appBuilder": "BuilderV1"}, []string{`polls:appBuilder: "BuilderV1" is not a builder`, `"auto"`, `"buildkit"`, `"legacy"`}},
		{"unknown migrations", map[string]string{"migrations": "inline"}, []string{`polls:migrations: "inline" is not accepted`, `"container"`, `"app"`, "pulumi config set polls:migrations app"}},
		{"bad memory", map[string]string{"appMemoryMb": "3"}, []string{"polls:appMemoryMb: 3 MiB"}},
		{"bad admin user", map[string]string{"adminUser": "Admin User"}, []string{"polls:adminUser"}},
		{"bad docker host", map[string]string{"dockerHost": "prod-1"}, []string{"polls:dockerHost", "ssh://user@host"}},
		{"unknown platform", map[string]string{"platform": "kubernetes"}, []string{`polls:platform: "kubernetes" is not a platform`, "docker", "swarm"}},
		{"swarm without registry", map[string]string{"platform": "swarm"}, []string{"polls:registry: required with polls:platform swarm"}},
		{"swarm registry without host", map[string]string{"platform": "swarm", "registry": "polls"}, []string{`polls:registry: "polls" does not start with a registry host`}},
		{"swarm registry with scheme", map[string]string{"platform": "swarm", "registry": "https://10.0.0.5:5000"}, []string{`polls:registry: "https://10.0.0.5:5000" is not a registry`}},
		{"swarm password without user", map[string]string{"platform": "swarm", "registry": "10.0.0.5:5000", "registryPassword": "x"}, []string{"polls:registryUsername: missing"}},
		{"swarm with a subnet pool", map[string]string{"platform": "swarm", "registry": "10.0.0.5:5000", "subnetPool": "10.9.0.0/16"}, []string{"polls:subnetPool: used only with polls:platform docker"}},
		{"swarm replicas zero", map[string]string{"platform": "swarm", "registry": "10.0.0.5:5000", "tenants": `{"thor":{"replicas":0}}`}, []string{"polls:tenants.thor: replicas 0", "1 to 100"}},
		{"swarm bad node", map[string]string{"platform": "swarm", "registry": "10.0.0.5:5000", "tenants": `{"thor":{"node":"Node 1"}}`}, []string{`polls:tenants.thor: node "Node 1"`, "docker node ls"}},
		{"docker with swarm-only settings", map[string]string{"registry": "10.0.0.5:5000", "tenants": `{"thor":{"replicas":2,"node":"n1"}}`},
			[]string{"polls:registry: used only with polls:platform swarm", `polls:tenants.thor: field "node" applies to polls:platform swarm only`, `polls:tenants.thor: field "replicas" applies`}},
		{"several problems reported together", map[string]string{"tenants": `["Thor"]`, "httpPort": "0"}, []string{"polls:tenants[0]", "polls:httpPort"}},
		{"repository relative", map[string]string{"backupRepository": "backups"}, []string{`polls:backupRepository: "backups" is not a repository`, "sftp://user@host"}},
		{"repository s3", map[string]string{"backupRepository": "s3://bucket/polls"}, []string{`polls:backupRepository: "s3://bucket/polls" is not a repository`}},
		{"repository sftp without user", map[string]string{"backupRepository": "sftp://10.0.0.9/srv"}, []string{"polls:backupRepository", "sftp://user@host"}},
		{"repository sftp password in URL", map[string]string{"backupRepository": "sftp://u:pw@h.example/srv", "backupSshKey": sshKey, "backupSshKnownHosts": "h ssh-ed25519 AAAA"}, []string{"polls:backupRepository: has a password in the URL"}},
		{"sftp credentials missing", map[string]string{"backupRepository": "sftp://backup@h.example/srv"},
			[]string{"polls:backupSshKey: missing", "pulumi config set --secret polls:backupSshKey", "polls:backupSshKnownHosts: missing", "ssh-keyscan -p 22 h.example"}},
		{"sftp key not a key", map[string]string{"backupRepository": "sftp://backup@h.example/srv", "backupSshKey": "hunter2", "backupSshKnownHosts": "h ssh-ed25519 AAAA"}, []string{"polls:backupSshKey: not a PEM or OpenSSH private key"}},
		{"ssh key with a local repository", map[string]string{"backupSshKey": sshKey}, []string{"used only with an sftp:// repository"}},
		{"retention impossible", map[string]string{"backupKeepDays": "0", "backupKeepWeeks": "-1"}, []string{"polls:backupKeepDays: 0 is not accepted", "polls:backupKeepWeeks: -1 is not accepted"}},
		{"retention shorter than the schedule", map[string]string{"backupSchedule": "weekly", "backupKeepDays": "3"}, []string{"polls:backupKeepDays: 3 days keep less than one base backup taken weekly", "at least 7 days"}},
		{"schedule unknown", map[string]string{"backupSchedule": "sometimes"}, []string{`polls:backupSchedule: "sometimes" is not a schedule`, "hourly, daily, weekly"}},
		{"backups not a bool", map[string]string{"backups": "maybe"}, []string{`polls:backups: "maybe" is not true or false`}},
		{"backup settings while off", map[string]string{"backups": "false", "backupSchedule": "hourly"}, []string{"polls:backupSchedule: set while polls:backups is false"}},
		{"short backup key", map[string]string{"backupKey": "short"}, []string{"polls:backupKey: shorter than 16 characters"}},
		{"restore in the future", map[string]string{"tenants": `{"thor":{"restore":"2999-01-01T00:00:00Z"}}`}, []string{"polls:tenants.thor: restore 2999-01-01T00:00:00Z is in the future"}},
		{"restore not a time", map[string]string{"tenants": `{"thor":{"restore":"yesterday"}}`}, []string{`polls:tenants.thor: restore "yesterday" is not a moment`, "RFC 3339"}},
		{"restore from nowhere", map[string]string{"tenants": `{"copy":{"restoreFrom":"ghost","restore":"latest"},"me":{"restoreFrom":"me","restore":"latest"}}`},
			[]string{`polls:tenants.copy: restoreFrom "ghost" is not another tenant`, `polls:tenants.me: restoreFrom "me" is not another tenant`}},
		{"restoreFrom without restore", map[string]string{"tenants": `{"thor":{},"copy":{"restoreFrom":"thor"}}`}, []string{"polls:tenants.copy: restoreFrom needs restore"}},
		{"rotation negative or not a number", map[string]string{"tenants": `{"thor":{"rotation":-1},"potter":{"rotation":"yes"}}`},
			[]string{"polls:tenants.thor: rotation -1 is not accepted: use 0 or more", `polls:tenants.potter: field "rotation" must be a whole number`}},
		{"restore with backups off", map[string]string{"backups": "false", "tenants": `{"thor":{"restore":"latest"}}`}, []string{"polls:tenants.thor: restore needs backups"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.values)
			if err == nil {
				t.Fatalf("Parse(%v) = nil error; want one containing %q", tt.values, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error = %q; want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestParseTLS ensures the certificate and key are taken together, must be
// PEM and must match, and that the key never appears in an error.
func TestParseTLS(t *testing.T) {
	cert, key := selfSigned(t, "polls.example.com")
	_, otherKey := selfSigned(t, "other.example.com")
	badKey := "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"
	tests := []struct {
		name   string
		values map[string]string
		want   string // error substring; "" means valid
	}{
		{"both", map[string]string{"tlsCertificate": cert, "tlsKey": key, "httpPort": "80", "httpsPort": "443"}, ""},
		{"key without certificate", map[string]string{"tlsKey": key}, "polls:tlsCertificate: missing while polls:tlsKey is set"},
		{"certificate without key", map[string]string{"tlsCertificate": cert}, "polls:tlsKey: missing"},
		{"certificate not PEM", map[string]string{"tlsCertificate": "hello", "tlsKey": key}, "polls:tlsCertificate: not a PEM certificate"},
		{"key not PEM", map[string]string{"tlsCertificate": cert, "tlsKey": "secret-key-material"}, "polls:tlsKey: not a PEM private key"},
		{"malformed key PEM", map[string]string{"tlsCertificate": cert, "tlsKey": badKey}, "polls:tlsKey: does not fit"},
		{"key of another certificate", map[string]string{"tlsCertificate": cert, "tlsKey": otherKey}, "polls:tlsKey: does not fit"},
		{"same ports", map[string]string{"tlsCertificate": cert, "tlsKey": key, "httpPort": "443", "httpsPort": "443"}, "polls:httpsPort: 443 is also polls:httpPort"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.values)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if s.TLS == nil || s.TLS.KeyPEM != key || s.URL("thor.example.com") != "https://thor.example.com/" {
					t.Errorf("TLS = %v, URL = %q; want TLS set and https URL without port", s.TLS != nil, s.URL("thor.example.com"))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v; want it to contain %q", err, tt.want)
			}
			for _, secret := range []string{"secret-key-material", "c2VjcmV0LWtleS1tYXRlcmlhbA", "PRIVATE KEY-----\n"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks key material %q: %v", secret, err)
				}
			}
		})
	}
}

// TestServerNamesAndURL ensures a tenant's own host comes first and URLs
// leave out default ports.
func TestServerNamesAndURL(t *testing.T) {
	s, err := Parse(map[string]string{"tenants": `[{"name":"thor","hosts":["polls.thor.example"]}]`})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Tenants[0].ServerNames(s.Domain), []string{"thor.polls.local", "polls.thor.example"}; !cmp.Equal(got, want) {
		t.Errorf("ServerNames = %q; want %q", got, want)
	}
	if got, want := s.URL("thor.polls.local"), "http://thor.polls.local:8080/"; got != want {
		t.Errorf("URL = %q; want %q", got, want)
	}
	s.HTTPPort = 80
	if got, want := s.URL("thor.polls.local"), "http://thor.polls.local/"; got != want {
		t.Errorf("URL = %q; want %q", got, want)
	}
}

// selfSigned returns a PEM certificate and key for host.
func selfSigned(t *testing.T, host string) (certPEM, keyPEM string) {
	t.Helper()
	c, k := nginxtest.SelfSigned(t, host)
	return string(c), string(k)
}

// TestParseACME ensures the ACME keys parse to the typed ACME settings,
// with Let's Encrypt production and 30 days as defaults, and that every
// bad value is refused at once, each naming the key and the fix, without
// a credential's value in any message.
func TestParseACME(t *testing.T) {
	root, _ := selfSigned(t, "ca.example")
	cert, key := selfSigned(t, "thor.polls.example")
	tenants := `{"thor":{"hosts":["shop.example.org"]}}`
	valid := []struct {
		name   string
		values map[string]string
		want   ACME
	}{
		{"email only, Pulumi.yaml's defaults", map[string]string{"acmeEmail": "ops@polls.example", "acmeDirectory": "production", "acmeRenewBefore": "30d", "acmeDnsResolvers": "[]", "acmeDnsCredentials": "{}"},
			ACME{Email: "ops@polls.example", Directory: LetsEncryptProduction, RenewBefore: 30 * 24 * time.Hour}},
		{"staging by one word", map[string]string{"acmeEmail": "ops@polls.example", "acmeDirectory": "staging"},
			ACME{Email: "ops@polls.example", Directory: LetsEncryptStaging, RenewBefore: 30 * 24 * time.Hour}},
		{"private CA with its root, DNS-01", map[string]string{"acmeEmail": "ops@polls.example", "acmeDirectory": "https://10.0.0.5:14000/dir",
			"acmeCaRoot": root, "acmeDnsProvider": "httpreq", "acmeDnsCredentials": `{"HTTPREQ_ENDPOINT":"http://10.0.0.5:9000","HTTPREQ_PASSWORD":"s3cret"}`,
			"acmeDnsResolvers": `["10.0.0.5:8053"]`, "acmeRenewBefore": "720h"},
			ACME{Email: "ops@polls.example", Directory: "https://10.0.0.5:14000/dir", CARoot: root, DNSProvider: "httpreq",
				DNSCredentials: map[string]string{"HTTPREQ_ENDPOINT": "http://10.0.0.5:9000", "HTTPREQ_PASSWORD": "s3cret"},
				DNSResolvers:   []string{"10.0.0.5:8053"}, RenewBefore: 30 * 24 * time.Hour}},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			tt.values["tenants"] = tenants
			s, err := Parse(tt.values)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if s.ACME == nil {
				t.Fatal("ACME = nil")
			}
			if diff := cmp.Diff(tt.want, *s.ACME, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ACME mismatch (-want +got):\n%s", diff)
			}
			if !s.HTTPS() || s.URL("thor.polls.local") != "https://thor.polls.local:8443/" {
				t.Errorf("URL = %q; want https on polls:httpsPort", s.URL("thor.polls.local"))
			}
		})
	}
	if s, err := Parse(map[string]string{"acmeDirectory": "production", "acmeRenewBefore": "30d"}); err != nil || s.ACME != nil {
		t.Errorf("Pulumi.yaml's defaults alone: ACME = %v, err %v; want ACME off", s.ACME, err)
	}

	invalid := []struct {
		name   string
		values map[string]string
		want   []string
	}{
		{"invalid email", map[string]string{"acmeEmail": "ops at polls"}, []string{`polls:acmeEmail: "ops at polls" is not an email address`, "pulumi config set polls:acmeEmail"}},
		{"email without a domain dot", map[string]string{"acmeEmail": "ops@localhost"}, []string{"polls:acmeEmail"}},
		{"malformed directory URL", map[string]string{"acmeEmail": "ops@polls.example", "acmeDirectory": "acme.example.com/dir"}, []string{`polls:acmeDirectory: "acme.example.com/dir" is not an ACME directory`, "production", "staging", "https://"}},
		{"plain-HTTP directory", map[string]string{"acmeEmail": "ops@polls.example", "acmeDirectory": "http://acme.example.com/dir"}, []string{"polls:acmeDirectory"}},
		{"unknown DNS provider", map[string]string{"acmeEmail": "ops@polls.example", "acmeDnsProvider": "cloudflair", "acmeDnsCredentials": `{"CF_DNS_API_TOKEN":"t0ken"}`},
			[]string{`polls:acmeDnsProvider: "cloudflair" is not a DNS provider`, "did you mean cloudflare", "polls-agent acme providers"}},
		{"missing provider credentials", map[string]string{"acmeEmail": "ops@polls.example", "acmeDnsProvider": "cloudflare"},
			[]string{"polls:acmeDnsCredentials: missing for DNS provider cloudflare", "CF_DNS_API_TOKEN", "pulumi config set --secret polls:acmeDnsCredentials"}},
		{"credential of another provider", map[string]string{"acmeEmail": "ops@polls.example", "acmeDnsProvider": "cloudflare", "acmeDnsCredentials": `{"CF_DNS_API_TOKEN":"t0ken","DO_AUTH_TOKEN":"t0ken"}`},
			[]string{`polls:acmeDnsCredentials: "DO_AUTH_TOKEN" is not a variable of DNS provider cloudflare`}},
		{"credentials not a map", map[string]string{"acmeEmail": "ops@polls.example", "acmeDnsProvider": "cloudflare", "acmeDnsCredentials": "t0ken"}, []string{"polls:acmeDnsCredentials: must be a JSON map"}},
		{"credentials without a provider", map[string]string{"acmeEmail": "ops@polls.example", "acmeDnsCredentials": `{"CF_DNS_API_TOKEN":"t0ken"}`}, []string{"polls:acmeDnsCredentials: set while polls:acmeDnsProvider is not"}},
		{"ACME keys without an email", map[string]string{"acmeDirectory": "staging", "acmeDnsProvider": "cloudflare"},
			[]string{"polls:acmeDirectory: used only with polls:acmeEmail", "polls:acmeDnsProvider: used only with polls:acmeEmail"}},
		{"bad CA root", map[string]string{"acmeEmail": "ops@polls.example", "acmeCaRoot": "not a certificate"}, []string{"polls:acmeCaRoot: not PEM certificates"}},
		{"bad renewBefore", map[string]string{"acmeEmail": "ops@polls.example", "acmeRenewBefore": "a month"}, []string{`polls:acmeRenewBefore: "a month" is not a duration`, "30d"}},
		{"bad resolver", map[string]string{"acmeEmail": "ops@polls.example", "acmeDnsResolvers": `["10.0.0.5"]`}, []string{`polls:acmeDnsResolvers: "10.0.0.5" is not host:port`}},
		{"ACME with a given certificate for the same hosts", map[string]string{"acmeEmail": "ops@polls.example", "domain": "polls.example", "tlsCertificate": cert, "tlsKey": key, "tenants": `["thor"]`},
			[]string{"polls:tlsCertificate: set together with polls:acmeEmail", "hosts thor.polls.example", "pulumi config rm polls:tlsCertificate", "pulumi config rm polls:acmeEmail"}},
		{"every problem at once", map[string]string{"acmeEmail": "ops", "acmeDirectory": "ftp://x", "acmeDnsProvider": "nope", "acmeRenewBefore": "0d", "tlsCertificate": cert, "tlsKey": key},
			[]string{"polls:acmeEmail", "polls:acmeDirectory", "polls:acmeDnsProvider", "polls:acmeRenewBefore", "polls:tlsCertificate: set together"}},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.values)
			if err == nil {
				t.Fatalf("Parse(%v) = nil error; want %q", tt.values, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error = %q; want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "t0ken") {
				t.Errorf("error leaks a credential: %v", err)
			}
		})
	}
}

// TestACMEHosts ensures every host of every tenant is listed with how its
// certificate is issued: the domain's tenants on the wildcard with a DNS
// provider, extra hosts on their own.
func TestACMEHosts(t *testing.T) {
	s, err := Parse(map[string]string{"domain": "polls.example", "tenants": `{"thor":{},"potter":{"hosts":["shop.example.org","a.b.polls.example"]}}`,
		"acmeEmail": "ops@polls.example", "acmeDnsProvider": "exec", "acmeDnsCredentials": `{"EXEC_PATH":"/bin/true"}`})
	if err != nil {
		t.Fatal(err)
	}
	want := []ACMEHost{{"a.b.polls.example", "potter", false}, {"potter.polls.example", "potter", true}, {"shop.example.org", "potter", false}, {"thor.polls.example", "thor", true}}
	if diff := cmp.Diff(want, s.ACMEHosts()); diff != "" {
		t.Errorf("ACMEHosts (-want +got):\n%s", diff)
	}
}

// sshKey is a private key's shape; its content is never checked here.
const sshKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
