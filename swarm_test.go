package main

import (
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/internal/fakes"
	"github.com/polls-tenants/polls/swarm"
)

// swarmConfig is a Swarm stack of three tenants: thor with three replicas,
// potter pinned to n1, hermione with defaults.
func swarmConfig() map[string]string {
	return map[string]string{
		"platform": "swarm", "registry": "10.231.0.1:5000/polls",
		"registryUsername": "polls", "registryPassword": "Reg1stryPw",
		"tenants": `{"thor":{"replicas":3},"potter":{"node":"n1"},"hermione":{}}`,
	}
}

func swarmMocks() *mocks {
	m := newMocks()
	m.NodeList = []dockerapi.Node{
		{ID: "a", Hostname: "n1", Ready: true, Availability: "active"},
		{ID: "b", Hostname: "n2", Ready: true, Availability: "active"},
	}
	return m
}

// TestSwarmResources ensures the Swarm platform declares per tenant an
// overlay network, a pinned one-replica database service and a replicated
// app service with its secrets, a migration container, and pushes the app
// image to the registry.
func TestSwarmResources(t *testing.T) {
	m := swarmMocks()
	if err := run(t, m, swarmConfig(), "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	counts := m.CountByType()
	want := map[string]int{
		"docker:index/service:Service":     2 * 3,
		"docker:index/secret:Secret":       2 * 3,
		"docker:index/network:Network":     2 + 3,             // edge, backup, one per tenant
		"docker:index/container:Container": 1 + 1 + 2 + 3 + 3, // nginx, its config, backup gateway and its logins, migrations, backup agents
		"docker:index/volume:Volume":       3 + 3,             // the router's config, the backup slots, the gateway's logins, the agents' spools; databases' volumes are Swarm's
	}
	for typ, n := range want {
		if counts[typ] != n {
			t.Errorf("%s: %d; want %d", typ, counts[typ], n)
		}
	}

	img := m.All()["docker:index/image:Image::app"]
	if got := img["imageName"].StringValue(); got != "10.231.0.1:5000/polls/polls-dev-app:latest" {
		t.Errorf("imageName = %q; want it in the registry", got)
	}
	if img["skipPush"].BoolValue() {
		t.Error("skipPush = true; the nodes pull the image from the registry")
	}
	if reg := img["registry"].ObjectValue(); reg["server"].StringValue() != "10.231.0.1:5000" || !reg["password"].IsSecret() {
		t.Errorf("registry = %v; want server 10.231.0.1:5000 and a secret password", reg)
	}

	// potter is pinned to n1, hermione goes to the empty n2, thor to the
	// least loaded, n1 on the tie.
	nodes := map[string]string{}
	for _, tn := range []string{"hermione", "potter", "thor"} {
		db := m.All()["docker:index/service:Service::"+tn+"-db"].Mappable()
		task := db["taskSpec"].(map[string]any)
		nodes[tn] = strings.TrimPrefix(strs(task["placement"].(map[string]any)["constraints"])[0], "node.hostname==")
		if r := db["mode"].(map[string]any)["replicated"].(map[string]any)["replicas"]; r != 1.0 {
			t.Errorf("%s-db replicas = %v; want 1", tn, r)
		}
		if o := db["updateConfig"].(map[string]any)["order"]; o != "stop-first" {
			t.Errorf("%s-db update order = %v; want stop-first (one server per data directory)", tn, o)
		}
		nets := task["networksAdvanceds"].([]any)
		if len(nets) != 1 {
			t.Errorf("%s-db is on %d networks; want only its tenant's", tn, len(nets))
		}
	}
	if diff := cmp.Diff(map[string]string{"hermione": "n2", "potter": "n1", "thor": "n1"}, nodes); diff != "" {
		t.Errorf("database nodes (-want +got):\n%s", diff)
	}
	// Once a database runs, its node is labelled as holding its data.
	labelled := map[string]string{}
	for _, n := range m.NodeList {
		for k := range n.Labels {
			labelled[strings.TrimPrefix(k, "polls.data.polls-dev.")] = n.Hostname
		}
	}
	if diff := cmp.Diff(nodes, labelled); diff != "" {
		t.Errorf("nodes labelled as holding data (-placed +labelled):\n%s", diff)
	}

	for tn, replicas := range map[string]float64{"thor": 3, "potter": 2, "hermione": 2} {
		app := m.All()["docker:index/service:Service::"+tn+"-app"].Mappable()
		if r := app["mode"].(map[string]any)["replicated"].(map[string]any)["replicas"]; r != replicas {
			t.Errorf("%s-app replicas = %v; want %v", tn, r, replicas)
		}
		u := app["updateConfig"].(map[string]any)
		if u["order"] != "start-first" || u["failureAction"] != "rollback" {
			t.Errorf("%s-app updateConfig = %v; want start-first with rollback", tn, u)
		}
		if mode := app["endpointSpec"].(map[string]any)["mode"]; mode != "dnsrr" {
			t.Errorf("%s-app endpoint mode = %v; want dnsrr", tn, mode)
		}
		if got := len(app["taskSpec"].(map[string]any)["networksAdvanceds"].([]any)); got != 2 {
			t.Errorf("%s-app is on %d networks; want its own and the edge", tn, got)
		}
		if a := m.All()["docker:index/service:Service::"+tn+"-app"]["auth"].ObjectValue(); !a["password"].IsSecret() {
			t.Errorf("%s-app registry auth password is not secret", tn)
		}
	}
	// With backups on, databases run the stack's database image, pushed
	// to polls:registry with the app's.
	if img := m.All()["docker:index/image:Image::db-image"]; img["imageName"].StringValue() != "10.231.0.1:5000/polls/polls-dev-db:latest" || img["skipPush"].BoolValue() {
		t.Errorf("db-image = %v; want it pushed to the registry", img)
	}
	if a := m.All()["docker:index/service:Service::thor-db"]["auth"]; !a.IsObject() || a.ObjectValue()["serverAddress"].StringValue() != "10.231.0.1:5000" {
		t.Errorf("thor-db auth = %v; want the registry's credentials for the stack's database image", a)
	}
	// Without backups, images run by tag are pinned to their digest in the
	// registry, and the nodes log in to polls:registry only for images that
	// are there.
	m0 := swarmMocks()
	c0 := swarmConfig()
	c0["backups"] = "false"
	if err := run(t, m0, c0, "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	if img := strs([]any{m0.All()["docker:index/service:Service::thor-db"]["taskSpec"].ObjectValue()["containerSpec"].ObjectValue()["image"].StringValue()})[0]; img != "postgres:17@sha256:postgres17" {
		t.Errorf("thor-db image = %q; want postgres:17 pinned to its digest", img)
	}
	if _, ok := m0.All()["docker:index/service:Service::thor-db"]["auth"]; ok && !m0.All()["docker:index/service:Service::thor-db"]["auth"].IsNull() {
		t.Errorf("thor-db sends registry credentials for postgres:17, which is not in polls:registry")
	}
	m2 := swarmMocks()
	c := swarmConfig()
	c["backups"] = "false"
	c["postgresImage"] = "10.231.0.1:5000/polls/postgres:15"
	if err := run(t, m2, c, "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	if a := m2.All()["docker:index/service:Service::thor-db"]["auth"]; !a.IsObject() || a.ObjectValue()["serverAddress"].StringValue() != "10.231.0.1:5000" {
		t.Errorf("thor-db auth = %v; want the registry's credentials for an image in it", a)
	}
	for _, name := range []string{"edge", "thor-net"} {
		n := m.All()["docker:index/network:Network::"+name]
		if n["driver"].StringValue() != "overlay" || !n["attachable"].BoolValue() {
			t.Errorf("network %s = %v; want an attachable overlay", name, n)
		}
	}
	if !m.All()["docker:index/network:Network::thor-net"]["internal"].BoolValue() {
		t.Error("thor-net is not internal")
	}
}

// TestSwarmSecretsStaySecret ensures no password, plain or base64, is in a
// plain input, and every Docker secret's data is a Pulumi secret.
func TestSwarmSecretsStaySecret(t *testing.T) {
	m := swarmMocks()
	if err := run(t, m, swarmConfig(), "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	var forbidden []string
	for _, tn := range []string{"thor", "potter", "hermione"} {
		for _, pw := range fakes.TenantPasswords(tn) {
			forbidden = append(forbidden, pw, base64.StdEncoding.EncodeToString([]byte(pw))[:20])
		}
	}
	forbidden = append(forbidden, "Reg1stryPw")
	secrets := 0
	for key, in := range m.All() {
		walkPlain(resource.NewObjectProperty(in), func(s string) {
			for _, pw := range forbidden {
				if strings.Contains(s, pw) {
					t.Errorf("%s has a secret in a plain input: %q", key, s)
				}
			}
		})
		if strings.HasPrefix(key, "docker:index/secret:Secret::") {
			secrets++
			if !in["data"].IsSecret() {
				t.Errorf("%s: data is not a Pulumi secret", key)
			}
		}
	}
	if secrets != 6 {
		t.Errorf("Docker secrets = %d; want 6", secrets)
	}
}

// TestSwarmLegacyPasswordsKept ensures an upgrade on Swarm rotates no
// password: a tenant whose database service an earlier version made (no
// polls.secrets label) keeps its random.RandomPassword resources and its
// service's labels, while a new tenant's are derived and its service marked.
func TestSwarmLegacyPasswordsKept(t *testing.T) {
	m := swarmMocks()
	m.ServiceList = []dockerapi.Service{{Name: "polls-dev-thor-db", Labels: map[string]string{"polls.stack": "polls-dev", "polls.role": "db", "polls.tenant": "thor", "polls.node": "n2"}}}
	if err := run(t, m, swarmConfig(), "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	var randoms []string
	for key := range m.All() {
		if name, ok := strings.CutPrefix(key, "random:index/randomPassword:RandomPassword::"); ok {
			randoms = append(randoms, name)
		}
	}
	sort.Strings(randoms)
	if want := []string{"backup-key", "tenant-key", "thor-admin-password", "thor-db-password"}; !slices.Equal(randoms, want) {
		t.Errorf("random passwords = %v; want %v", randoms, want)
	}
	for tn, marked := range map[string]bool{"thor": false, "potter": true, "hermione": true} {
		labels := fmt.Sprint(m.All()["docker:index/service:Service::"+tn+"-db"]["labels"])
		if strings.Contains(labels, contract.LabelSecrets) != marked {
			t.Errorf("%s's database service labels %s: has %s = %v; want %v", tn, labels, contract.LabelSecrets, !marked, marked)
		}
	}
}

// TestSwarmDatabasesStay ensures a database that runs keeps its node when
// tenants are added, and that config or cluster problems register nothing.
func TestSwarmDatabasesStay(t *testing.T) {
	m := swarmMocks()
	m.ServiceList = []dockerapi.Service{{Name: "polls-dev-thor-db", Labels: map[string]string{"polls.stack": "polls-dev", "polls.role": "db", "polls.tenant": "thor", "polls.node": "n2"}}}
	if err := run(t, m, swarmConfig(), "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	db := m.All()["docker:index/service:Service::thor-db"].Mappable()
	if c := strs(db["taskSpec"].(map[string]any)["placement"].(map[string]any)["constraints"]); c[0] != "node.hostname==n2" {
		t.Errorf("thor's database constraints = %v; want it kept on n2", c)
	}

	// hermione was removed and is added back: the node holding its data
	// takes it, though the other is emptier.
	m = swarmMocks()
	m.NodeList[0].Labels = map[string]string{"polls.data.polls-dev.hermione": "true"}
	if err := run(t, m, swarmConfig(), "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	db = m.All()["docker:index/service:Service::hermione-db"].Mappable()
	if c := strs(db["taskSpec"].(map[string]any)["placement"].(map[string]any)["constraints"]); c[0] != "node.hostname==n1" {
		t.Errorf("re-added hermione's database constraints = %v; want n1, which holds its data", c)
	}

	tests := []struct {
		name  string
		setup func(*mocks, map[string]string)
		want  string
	}{
		{"not a manager", func(m *mocks, _ map[string]string) { m.NodeList = nil }, "polls:platform: swarm, but the Docker engine is not a Swarm manager"},
		{"a pin away from the data", func(m *mocks, c map[string]string) {
			m.ServiceList = []dockerapi.Service{{Labels: map[string]string{"polls.stack": "polls-dev", "polls.role": "db", "polls.tenant": "potter", "polls.node": "n2"}}}
		}, `polls:tenants.potter: node is "n1", but the tenant's database and its node-local volume are on "n2"`},
		{"unknown node", func(_ *mocks, c map[string]string) { c["tenants"] = `{"thor":{"node":"n9"}}` }, `polls:tenants.thor: node "n9" is not a node of the cluster`},
		{"plain-text registry password", func(_ *mocks, c map[string]string) {}, "polls:registryPassword is stored in plain text"},
		{"an image the registry does not have", func(_ *mocks, c map[string]string) { c["postgresImage"] = "10.0.0.5:5000/missing:15" },
			"polls:postgresImage: 10.0.0.5:5000/missing:15 cannot be found in its registry (manifest unknown)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := swarmMocks()
			c := swarmConfig()
			tt.setup(m, c)
			var secret []string
			if tt.name != "plain-text registry password" {
				secret = []string{"polls:registryPassword"}
			}
			err := run(t, m, c, secret...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v; want one containing %q", err, tt.want)
			}
			counts := m.CountByType()
			delete(counts, "pulumi:pulumi:Stack")
			if len(counts) != 0 {
				t.Errorf("resources registered despite the error: %v", counts)
			}
		})
	}
}

// strs converts a decoded JSON list of strings.
func strs(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	return out
}

// TestSwarmWaitsForTheDeclaredSpec ensures each service is waited for with
// the image it is declared with, and each app also with the digest of its
// task template that its environment carries (POLLS_SPEC): Swarm's
// rollback puts the previous environment back, which the wait tells. The
// digest changes with a setting that keeps the image (a tenant's memory
// limit) for that tenant's app only, and no service carries it as a label,
// which the provider would replace the service for.
func TestSwarmWaitsForTheDeclaredSpec(t *testing.T) {
	digests := func(config map[string]string) map[string]string {
		t.Helper()
		m := swarmMocks()
		if err := run(t, m, config, "polls:registryPassword"); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, tn := range []string{"thor", "potter", "hermione"} {
			for _, part := range []string{"db", "app"} {
				name := tn + "-" + part
				in := m.All()["docker:index/service:Service::"+name]
				cs := in["taskSpec"].ObjectValue()["containerSpec"].ObjectValue()
				digest := ""
				if e, ok := cs["env"]; ok && e.IsObject() {
					if d, ok := e.ObjectValue()[swarm.SpecEnv]; ok {
						digest = d.StringValue()
					}
				}
				for _, l := range in["labels"].ArrayValue() {
					if digest != "" && l.ObjectValue()["value"].StringValue() == digest {
						t.Errorf("%s: label %s carries the digest", name, l.ObjectValue()["label"].StringValue())
					}
				}
				waited, ok := m.Waited[fakes.ID(name)]
				if !ok || waited.Image != cs["image"].StringValue() || waited.Env[swarm.SpecEnv] != digest || (part == "app") != (digest != "") {
					t.Errorf("%s: waited for %+v (asked: %v); want image %s and %s=%q, as declared (apps only)", name, waited, ok, cs["image"].StringValue(), swarm.SpecEnv, digest)
				}
				got[name] = digest
			}
		}
		return got
	}
	before := digests(swarmConfig())
	c := swarmConfig()
	c["tenants"] = `{"thor":{"replicas":3,"memoryMb":128},"potter":{"node":"n1"},"hermione":{}}`
	after := digests(c)
	for name, d := range before {
		if changed := after[name] != d; changed != (name == "thor-app") {
			t.Errorf("%s: digest %q -> %q after thor's memory changed; want a new one for thor-app only", name, d, after[name])
		}
	}
}

// TestSwarmRestoreOnAnotherNode ensures a tenant whose database's node is
// down is brought up on another node from its backups when its pin and a
// restore say so: its service is pinned to the new node, no backup is taken
// of the copy left behind, and the old node stops being labelled as holding
// its data.
func TestSwarmRestoreOnAnotherNode(t *testing.T) {
	m := swarmMocks()
	m.NodeList[1].Ready = false
	m.NodeList[1].Labels = map[string]string{"polls.data.polls-dev.thor": "true"}
	m.ServiceList = []dockerapi.Service{{Name: "polls-dev-thor-db", Labels: map[string]string{"polls.stack": "polls-dev", "polls.role": "db", "polls.tenant": "thor", "polls.node": "n2"}}}
	m.ContainerList = []dockerapi.ContainerSummary{{ID: "thor-agent", State: "running", Health: "unhealthy",
		Labels: map[string]string{"polls.stack": "polls-dev", "polls.tenant": "thor", "polls.role": "backup"}}}
	m.ExecOut = map[string]string{"thor-agent": `{"generations":[{"id":"g1","from":"2026-11-01T00:10:00Z","to":"2026-11-01T23:50:00Z"}]}`}
	cfg := swarmConfig()
	cfg["tenants"] = `{"thor":{"node":"n1","restore":"latest"}}`
	if err := run(t, m, cfg, "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	db := m.All()["docker:index/service:Service::thor-db"].Mappable()
	constraints := db["taskSpec"].(map[string]any)["placement"].(map[string]any)["constraints"]
	if fmt.Sprint(constraints) != "[node.hostname==n1]" {
		t.Errorf("thor's database constraints = %v; want node.hostname==n1", constraints)
	}
	for _, e := range m.Execs {
		if strings.Contains(e, "backup now") {
			t.Errorf("a backup was taken of the copy left on the down node: %s", e)
		}
	}
	if _, held := m.NodeList[1].Labels["polls.data.polls-dev.thor"]; held {
		t.Errorf("n2 is still labelled as holding thor's data: %v", m.NodeList[1].Labels)
	}
	if m.NodeList[0].Labels["polls.data.polls-dev.thor"] != "true" {
		t.Errorf("n1 is not labelled as holding thor's data: %v", m.NodeList[0].Labels)
	}
}

// TestSwarmRouterFindsLostApps ensures the router on Swarm, whose apps run
// on other nodes too, probes its connections to them every second (TCP
// keepalive in its network namespace), and the router on one host, whose
// apps close their connections when they end, keeps the kernel's timings
// (and so stays the container it was).
func TestSwarmRouterFindsLostApps(t *testing.T) {
	m := swarmMocks()
	if err := run(t, m, swarmConfig(), "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	got := m.All()["docker:index/container:Container::router"]["sysctls"].Mappable()
	want := map[string]any{"net.ipv4.tcp_keepalive_time": "1", "net.ipv4.tcp_keepalive_intvl": "1", "net.ipv4.tcp_keepalive_probes": "2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Swarm router sysctls (-want +got):\n%s", diff)
	}
	one := newMocks()
	if err := run(t, one, map[string]string{"tenants": tenantList("thor")}); err != nil {
		t.Fatal(err)
	}
	if s, ok := one.All()["docker:index/container:Container::router"]["sysctls"]; ok && !s.IsNull() {
		t.Errorf("one-host router sysctls = %v; want none", s)
	}
}

// TestSwarmMigrationsInApp ensures polls:migrations app on Swarm declares no
// migration container: each app task runs `serve -migrate` with the admin
// password as one more Docker secret, a tenant being restored carries the
// restore's ID in its template (so its tasks roll and migrate the restored
// database), and the app service's labels are the same as with migration
// containers (a changed label would replace the service delete-first).
func TestSwarmMigrationsInApp(t *testing.T) {
	declare := func(cfg map[string]string) (map[string]resource.PropertyMap, *mocks) {
		t.Helper()
		m := swarmMocks()
		if err := run(t, m, cfg, "polls:registryPassword"); err != nil {
			t.Fatal(err)
		}
		return m.All(), m
	}
	before, _ := declare(swarmConfig())
	cfg := swarmConfig()
	cfg["migrations"] = "app"
	all, m := declare(cfg)
	counts := m.CountByType()
	if got := counts["docker:index/container:Container"]; got != 1+1+2+3 {
		t.Errorf("containers = %d; want 7 (nginx, its config, backup gateway and its logins, backup agents; no migration)", got)
	}
	if got := counts["docker:index/secret:Secret"]; got != 3*3 {
		t.Errorf("secrets = %d; want 9 (database password, URL and admin password per tenant)", got)
	}
	for _, tn := range []string{"thor", "potter", "hermione"} {
		app := all["docker:index/service:Service::"+tn+"-app"].Mappable()
		spec := app["taskSpec"].(map[string]any)["containerSpec"].(map[string]any)
		if got := fmt.Sprint(spec["args"]); got != "[serve -migrate]" {
			t.Errorf("%s-app args = %s; want [serve -migrate]", tn, got)
		}
		var files []string
		for _, s := range spec["secrets"].([]any) {
			files = append(files, fmt.Sprint(s.(map[string]any)["fileName"]))
		}
		if fmt.Sprint(files) != "[database-url admin-password]" {
			t.Errorf("%s-app secret files = %v; want [database-url admin-password]", tn, files)
		}
		if _, ok := spec["env"].(map[string]any)[swarm.RestoreEnv]; ok {
			t.Errorf("%s-app names a restore, and none was asked for", tn)
		}
		if env := spec["env"].(map[string]any); env["ADMIN_USER"] != "admin" || env["ADMIN_PASSWORD_FILE"] == nil {
			t.Errorf("%s-app env = %v; want the admin user and its password file", tn, env)
		}
		if fmt.Sprint(before["docker:index/service:Service::"+tn+"-app"]["labels"]) != fmt.Sprint(all["docker:index/service:Service::"+tn+"-app"]["labels"]) {
			t.Errorf("%s-app's labels differ between polls:migrations container and app", tn)
		}
	}

	// thor restored: its tasks' template names the restore.
	restoring := swarmMocks()
	withAgent(restoring, "")
	cfg["tenants"] = `{"thor":{"restore":"latest"}}`
	if err := run(t, restoring, cfg, "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	app := restoring.All()["docker:index/service:Service::thor-app"].Mappable()
	env := app["taskSpec"].(map[string]any)["containerSpec"].(map[string]any)["env"].(map[string]any)
	if want := contract.RestoreID("thor", "", "latest"); env[swarm.RestoreEnv] != want {
		t.Errorf("thor-app's env while restoring = %v; want %s=%s, the restore's ID", env, swarm.RestoreEnv, want)
	}
}
