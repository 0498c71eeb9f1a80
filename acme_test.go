package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/polls-tenants/polls/internal/fakes"
	"github.com/polls-tenants/polls/nginx/nginxtest"
)

// acmeConfig is a stack with ACME: a private CA with its root, DNS-01 for
// the wildcard through httpreq, and a tenant with an extra host.
func acmeConfig(t *testing.T) map[string]string {
	root, _ := nginxtest.SelfSigned(t, "ca.polls.test")
	return map[string]string{
		"domain":             "polls.example",
		"tenants":            `{"thor":{},"potter":{"hosts":["shop.example.org"]}}`,
		"httpsPort":          "8443",
		"acmeEmail":          "ops@polls.example",
		"acmeDirectory":      "https://ca.polls.test:14000/dir",
		"acmeCaRoot":         string(root),
		"acmeDnsProvider":    "httpreq",
		"acmeDnsCredentials": `{"HTTPREQ_ENDPOINT":"http://dns.polls.test:9000","HTTPREQ_PASSWORD":"Dn5Secr3t"}`,
		"acmeDnsResolvers":   `["10.0.0.53:8053"]`,
		"appBuildArgs":       `{"GO_IMAGE":"polls-local/golang:1.26","GOPROXY":"http://127.0.0.1:3001","VERSION":"7"}`,
	}
}

// validStatus is the companion's status with every host of acmeConfig
// (and hermione) served.
const validStatus = `{"hosts":[{"host":"hermione.polls.example","tenant":"hermione","state":"valid"},{"host":"potter.polls.example","tenant":"potter","state":"valid"},{"host":"shop.example.org","tenant":"potter","state":"valid"},{"host":"thor.polls.example","tenant":"thor","state":"valid"},{"host":"hermione.polls.local","tenant":"hermione","state":"valid"},{"host":"potter.polls.local","tenant":"potter","state":"valid"},{"host":"thor.polls.local","tenant":"thor","state":"valid"}]}`

// companionStatus makes the fake engine answer the companion's status
// command, by its name (as read before declaring) and by its ID.
func companionStatus(status string) map[string]string {
	return map[string]string{"polls-dev-acme": status, fakes.ID("router-acme"): status}
}

func values(v resource.PropertyValue) []string {
	var out []string
	for _, e := range v.ArrayValue() {
		out = append(out, e.StringValue())
	}
	return out
}

// TestACMEWiring ensures, on both platforms, that ACME adds the agent
// image (built without VERSION, never pushed), the companion in the
// router's PID namespace with the shared config read-only, the live
// volume (read-only in the router) and a retained state volume; that the
// router publishes HTTPS; that acme.hosts lists every host; and that the
// DNS credentials reach the companion only as secret files.
func TestACMEWiring(t *testing.T) {
	for _, platform := range []string{"docker", "swarm"} {
		t.Run(platform, func(t *testing.T) {
			m, cfg, secrets := newMocks(), acmeConfig(t), []string{"polls:acmeDnsCredentials"}
			if platform == "swarm" {
				m = swarmMocks()
				for k, v := range swarmConfig() {
					if k != "tenants" {
						cfg[k] = v
					}
				}
				secrets = append(secrets, "polls:registryPassword")
			}
			m.Engine.ExecOut = companionStatus(validStatus)
			if err := run(t, m, cfg, secrets...); err != nil {
				t.Fatal(err)
			}
			all := m.All()
			agent := all["docker:index/image:Image::agent-image"]
			if agent == nil {
				t.Fatal("no agent image")
			}
			build := agent["build"].ObjectValue()
			args := build["args"].ObjectValue()
			if build["target"].StringValue() != "agent" || args["GO_IMAGE"].StringValue() != "polls-local/golang:1.26" || args["POSTGRES_IMAGE"].StringValue() == "" {
				t.Errorf("agent image build = %v; want target agent with GO_IMAGE and POSTGRES_IMAGE", build)
			}
			if _, ok := args["VERSION"]; ok || !agent["skipPush"].BoolValue() {
				t.Errorf("agent image: args %v, skipPush %v; want no VERSION (a release must not rebuild it) and never pushed", args, agent["skipPush"])
			}

			c := all["docker:index/container:Container::router-acme"]
			if c == nil {
				t.Fatal("no certificate companion")
			}
			if c["pidMode"].StringValue() != "container:router-id" || c["networkMode"].StringValue() != "container:router-id" || c["user"].StringValue() != "root" {
				t.Errorf("companion pidMode %v networkMode %v user %v; want the router's PID and network namespaces (its self-check asks nginx on the loopback), as root", c["pidMode"], c["networkMode"], c["user"])
			}
			cmd := strings.Join(values(c["command"]), " ")
			for _, want := range []string{"acme run", "--email ops@polls.example", "--directory https://ca.polls.test:14000/dir", "--domain polls.example",
				"--dns-provider httpreq", "--dns-resolvers 10.0.0.53:8053", "--ca-root /run/secrets/acme/ca-root.pem", "--renew-before 720h0m0s",
				"--self-check http://127.0.0.1:80"} {
				if !strings.Contains(cmd, want) {
					t.Errorf("companion command %q lacks %q", cmd, want)
				}
			}
			env := strings.Join(values(c["envs"]), " ")
			if !strings.Contains(env, "HTTPREQ_PASSWORD_FILE=/run/secrets/acme/dns/HTTPREQ_PASSWORD") {
				t.Errorf("companion env %q; want the credential as a _FILE variable", env)
			}
			var secretUploads int
			for _, u := range c["uploads"].ArrayValue() {
				if u.ObjectValue()["content"].IsSecret() {
					secretUploads++
				}
			}
			if secretUploads != 3 {
				t.Errorf("companion has %d secret uploads; want 3 (CA root, two credentials)", secretUploads)
			}
			mounts := map[string]bool{}
			for _, mt := range c["mounts"].ArrayValue() {
				o := mt.ObjectValue()
				ro := o["readOnly"].IsBool() && o["readOnly"].BoolValue()
				mounts[o["target"].StringValue()] = ro
			}
			if ro, ok := mounts["/etc/nginx/conf.d"]; !ok || !ro {
				t.Errorf("companion mounts %v; want conf.d read-only", mounts)
			}
			if ro, ok := mounts["/var/lib/polls-acme/state"]; !ok || ro {
				t.Errorf("companion mounts %v; want its state writable", mounts)
			}

			state := all["docker:index/volume:Volume::router-acme-state"]
			if state == nil || !strings.Contains(resource.NewObjectProperty(state).String(), "polls.retained") {
				t.Errorf("state volume %v; want one labelled polls.retained", state)
			}
			if req, ok := m.Request("docker:index/volume:Volume", "router-acme-state"); !ok || !req.GetRetainOnDelete() {
				t.Error("the certificate state volume is not retained on delete")
			}

			router := all["docker:index/container:Container::router"]
			if !strings.Contains(router["ports"].String(), "443") || !strings.Contains(router["ports"].String(), "8443") {
				t.Errorf("router ports %v; want 443 published on 8443", router["ports"])
			}
			var liveRO bool
			for _, mt := range router["mounts"].ArrayValue() {
				o := mt.ObjectValue()
				if o["target"].StringValue() == "/var/lib/polls-acme/live" {
					liveRO = o["readOnly"].BoolValue()
				}
			}
			if !liveRO {
				t.Error("the router does not mount the certificates read-only")
			}

			var hosts string
			for _, u := range all["docker:index/container:Container::router-config"]["uploads"].ArrayValue() {
				if strings.HasSuffix(u.ObjectValue()["file"].StringValue(), "/acme.hosts") {
					hosts = u.ObjectValue()["content"].StringValue()
				}
			}
			if want := "potter.polls.example potter\nshop.example.org potter\nthor.polls.example thor\n"; hosts != want {
				t.Errorf("acme.hosts = %q; want %q", hosts, want)
			}

			for key, in := range all {
				walkPlain(resource.NewObjectProperty(in), func(s string) {
					if strings.Contains(s, "Dn5Secr3t") {
						t.Errorf("%s carries a DNS credential in plain text", key)
					}
				})
			}
			if !slices.ContainsFunc(m.Engine.Execs, func(e string) bool { return strings.Contains(e, "acme status") }) {
				t.Error("the program did not read the companion's status")
			}
		})
	}
}

// TestACMEAddingTenantKeepsCompanion ensures adding a tenant changes
// neither the companion nor its image: it learns the new hosts from the
// shared config's acme.hosts.
func TestACMEAddingTenantKeepsCompanion(t *testing.T) {
	before, after := newMocks(), newMocks()
	before.Engine.ExecOut, after.Engine.ExecOut = companionStatus(validStatus), companionStatus(validStatus)
	cfg := acmeConfig(t)
	if err := run(t, before, cfg, "polls:acmeDnsCredentials"); err != nil {
		t.Fatal(err)
	}
	cfg["tenants"] = `{"thor":{},"potter":{"hosts":["shop.example.org"]},"hermione":{}}`
	if err := run(t, after, cfg, "polls:acmeDnsCredentials"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"docker:index/container:Container::router-acme", "docker:index/image:Image::agent", "docker:index/container:Container::router"} {
		if !before.All()[key].DeepEquals(after.All()[key]) {
			t.Errorf("%s changed by adding a tenant", key)
		}
	}
}

// TestACMECredentialsMustBeSecret ensures DNS credentials stored without
// --secret are refused before anything is registered.
func TestACMECredentialsMustBeSecret(t *testing.T) {
	m := newMocks()
	err := run(t, m, acmeConfig(t))
	if err == nil || !strings.Contains(err.Error(), "polls:acmeDnsCredentials is stored in plain text") || !strings.Contains(err.Error(), "--secret") {
		t.Fatalf("error = %v; want polls:acmeDnsCredentials refused as plain text", err)
	}
	if n := len(m.Keys()); n != 0 {
		t.Errorf("%d resources registered; want none", n)
	}
}
