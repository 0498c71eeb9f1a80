package main

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/internal/fakes"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/router"
)

// mocks are the shared fakes of the providers and the Docker engine.
type mocks struct {
	*fakes.Provider
	*fakes.Engine
}

func newMocks() *mocks {
	m := &mocks{Provider: fakes.NewProvider(), Engine: &fakes.Engine{}}
	m.Provider.Engine = m.Engine
	return m
}

func (m *mocks) connect(string) (Engine, error) { return m.Engine, nil }

// run evaluates the program under mocks with the given stack config.
func run(t testing.TB, m *mocks, config map[string]string, secretKeys ...string) error {
	t.Helper()
	cfg := map[string]string{}
	for k, v := range config {
		cfg["polls:"+k] = v
	}
	return pulumi.RunErr(program(m.connect), pulumi.WithMocks("polls", "dev", m), func(info *pulumi.RunInfo) {
		info.Config = cfg
		info.ConfigSecretKeys = secretKeys
	})
}

func tenantList(names ...string) string {
	return `["` + strings.Join(names, `","`) + `"]`
}

// TestResourceCounts ensures each tenant adds exactly its own resources and
// the shared ones exist once, for 0, 1, 2 and 5 tenants.
func TestResourceCounts(t *testing.T) {
	for _, n := range []int{0, 1, 2, 5} {
		t.Run(fmt.Sprintf("%d tenants", n), func(t *testing.T) {
			var names []string
			for i := range n {
				names = append(names, fmt.Sprintf("t%d", i))
			}
			m := newMocks()
			cfg := map[string]string{}
			if n > 0 {
				cfg["tenants"] = tenantList(names...)
			}
			if err := run(t, m, cfg); err != nil {
				t.Fatalf("program: %v", err)
			}
			want := map[string]int{
				"pulumi:providers:docker":                    1,
				"docker:index/image:Image":                   3,       // app, the databases' and the agents'
				"docker:index/network:Network":               2 + n,   // edge, backup + one private per tenant
				"docker:index/volume:Volume":                 3 + 2*n, // router config, backup slots, gateway logins + data, backup spool per tenant
				"docker:index/container:Container":           4 + 4*n, // router, config, backup gateway, its logins; db, migrate, app, backup agent per tenant
				"random:index/randomPassword:RandomPassword": 2,       // the generated backup key, the tenant key
				"polls:index:Tenant":                         n,
				"polls:index:Router":                         1,
			}
			got := m.CountByType()
			delete(got, "pulumi:pulumi:Stack")
			for k, v := range got {
				if v == 0 {
					delete(got, k)
				}
			}
			for k, v := range want {
				if v == 0 {
					delete(want, k)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("resource counts (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLogicalNamesStable ensures a tenant's resources are named after the
// tenant alone, never after its position in the list.
func TestLogicalNamesStable(t *testing.T) {
	names := func(list string) []string {
		m := newMocks()
		if err := run(t, m, map[string]string{"tenants": list}); err != nil {
			t.Fatalf("program: %v", err)
		}
		var out []string
		for key := range m.All() {
			if strings.Contains(key, "::thor") {
				out = append(out, key)
			}
		}
		sort.Strings(out)
		return out
	}
	want := []string{
		"docker:index/container:Container::thor-app",
		"docker:index/container:Container::thor-backup",
		"docker:index/container:Container::thor-db",
		"docker:index/container:Container::thor-migrate",
		"docker:index/network:Network::thor-net",
		"docker:index/volume:Volume::thor-backup-spool",
		"docker:index/volume:Volume::thor-pgdata",
		"polls:index:Tenant::thor",
	}
	if diff := cmp.Diff(want, names(tenantList("thor", "potter"))); diff != "" {
		t.Errorf("thor's resources (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, names(tenantList("albus", "potter", "thor"))); diff != "" {
		t.Errorf("thor's resources after inserting a tenant before it (-want +got):\n%s", diff)
	}
}

// TestAddingTenantTouchesNoOtherInputs ensures adding a tenant changes no
// input of any other tenant's resources, of the router container or of any
// shared resource: only the installers of the router's config and of the
// backup gateway's logins are new.
func TestAddingTenantTouchesNoOtherInputs(t *testing.T) {
	before, after := newMocks(), newMocks()
	if err := run(t, before, map[string]string{"tenants": tenantList("thor", "potter")}); err != nil {
		t.Fatal(err)
	}
	// The engine now has the networks and containers the first run
	// declared.
	after.NetworkList = before.declaredNetworks()
	after.ContainerList = before.declaredContainers()
	if err := run(t, after, map[string]string{"tenants": tenantList("thor", "potter", "hermione")}); err != nil {
		t.Fatal(err)
	}
	changed := []string{}
	for key, in := range before.All() {
		if !in.DeepEquals(after.All()[key]) {
			changed = append(changed, key)
		}
	}
	sort.Strings(changed)
	// The gateway's logins list the tenants: their installer is replaced,
	// the gateway is not (it reads the file again).
	want := []string{"docker:index/container:Container::backup-logins", "docker:index/container:Container::router-config"}
	if diff := cmp.Diff(want, changed); diff != "" {
		t.Errorf("resources whose inputs changed (-want +got):\n%s", diff)
	}
	for key := range after.All() {
		if _, existed := before.All()[key]; !existed && !strings.Contains(key, "::hermione") {
			t.Errorf("new resource %s is not named after the new tenant", key)
		}
	}
	router := "docker:index/container:Container::router"
	if _, ok := before.All()[router]; !ok {
		t.Fatalf("no %s registered", router)
	}
}

// TestSecretsStaySecret ensures the generated passwords reach resources and
// outputs only as Pulumi secrets: no input carries them in plain text, and
// the admin password output is secret.
func TestSecretsStaySecret(t *testing.T) {
	m := newMocks()
	if err := run(t, m, map[string]string{"tenants": tenantList("thor", "potter")}); err != nil {
		t.Fatal(err)
	}
	passwords := []string{}
	for _, tn := range []string{"thor", "potter"} {
		passwords = append(passwords, fakes.TenantPasswords(tn)...)
	}
	var secretUploads int
	for key, in := range m.All() {
		walkPlain(resource.NewObjectProperty(in), func(s string) {
			for _, pw := range passwords {
				if strings.Contains(s, pw) {
					t.Errorf("%s has a password in a plain (non-secret) input: %q", key, s)
				}
			}
		})
		if uploads, ok := in["uploads"]; ok {
			for _, u := range uploads.ArrayValue() {
				if u.ObjectValue()["content"].IsSecret() {
					secretUploads++
				}
			}
		}
	}
	// db: password file; migrate: URL and admin password; app: URL;
	// backup agent: the database password, repository URL and key, restore
	// token, copy and source tokens. Plus the gateway's logins.
	if want := 2*(4+6) + 1; secretUploads != want {
		t.Errorf("secret uploads = %d; want %d", secretUploads, want)
	}
	for _, tn := range []string{"thor", "potter"} {
		for _, role := range []string{"db", "migrate", "app"} {
			in := m.All()["docker:index/container:Container::"+tn+"-"+role]
			for _, env := range in["envs"].ArrayValue() {
				if strings.Contains(strings.ToUpper(env.StringValue()), "PASSWORD=") {
					t.Errorf("%s-%s passes a password through its environment: %s", tn, role, env.StringValue())
				}
			}
		}
	}
}

// TestLegacyPasswordsKept ensures an upgrade rotates no password: a tenant
// an earlier version deployed (its network on the engine without
// polls.secrets) keeps its two random.RandomPassword resources, under the
// same names, and its network as it was, while a new tenant's passwords are
// derived from the tenant key and its network is marked. Raising the old
// tenant's rotation moves it to derived passwords, its network untouched.
func TestLegacyPasswordsKept(t *testing.T) {
	first := newMocks()
	if err := run(t, first, map[string]string{"tenants": tenantList("thor", "potter")}); err != nil {
		t.Fatal(err)
	}
	// As an earlier version left them: thor's network without the label.
	nets := first.declaredNetworks()
	for _, n := range nets {
		if n.Labels[contract.LabelTenant] == "thor" {
			delete(n.Labels, contract.LabelSecrets)
		}
	}
	dbPassword := func(m *mocks, tenant string) string {
		for _, u := range m.All()["docker:index/container:Container::"+tenant+"-db"]["uploads"].ArrayValue() {
			if c := u.ObjectValue()["content"]; c.IsSecret() && u.ObjectValue()["file"].StringValue() == contract.DBPasswordFile {
				return c.SecretValue().Element.StringValue()
			}
		}
		t.Fatalf("%s's database has no secret password upload", tenant)
		return ""
	}
	randoms := func(m *mocks) []string {
		var out []string
		for key := range m.All() {
			if name, ok := strings.CutPrefix(key, "random:index/randomPassword:RandomPassword::"); ok {
				out = append(out, name)
			}
		}
		sort.Strings(out)
		return out
	}
	netLabels := func(m *mocks, tenant string) string {
		return fmt.Sprint(m.All()["docker:index/network:Network::"+tenant+"-net"]["labels"])
	}

	upgraded := newMocks()
	upgraded.NetworkList = nets
	if err := run(t, upgraded, map[string]string{"tenants": tenantList("thor", "potter", "hermione")}); err != nil {
		t.Fatal(err)
	}
	if got, want := randoms(upgraded), []string{"backup-key", "tenant-key", "thor-admin-password", "thor-db-password"}; !slices.Equal(got, want) {
		t.Errorf("random passwords after the upgrade = %v; want %v", got, want)
	}
	if got, want := dbPassword(upgraded, "thor"), fakes.Password("thor-db-password"); got != want {
		t.Errorf("thor's database password = %q; want its random password %q", got, want)
	}
	for _, tn := range []string{"potter", "hermione"} {
		if got, want := dbPassword(upgraded, tn), fakes.TenantPasswords(tn)[0]; got != want {
			t.Errorf("%s's database password = %q; want the derived %q", tn, got, want)
		}
		if l := netLabels(upgraded, tn); !strings.Contains(l, contract.LabelSecrets) {
			t.Errorf("%s's network labels %s lack %s", tn, l, contract.LabelSecrets)
		}
	}
	if l := netLabels(upgraded, "thor"); strings.Contains(l, contract.LabelSecrets) {
		t.Errorf("thor's network labels %s gained %s: the network would be replaced", l, contract.LabelSecrets)
	}

	rotated := newMocks()
	rotated.NetworkList = nets
	if err := run(t, rotated, map[string]string{"tenants": `{"thor":{"rotation":1},"potter":{}}`}); err != nil {
		t.Fatal(err)
	}
	if got, want := randoms(rotated), []string{"backup-key", "tenant-key"}; !slices.Equal(got, want) {
		t.Errorf("random passwords after thor's rotation = %v; want %v", got, want)
	}
	if got, want := dbPassword(rotated, "thor"), contract.TenantPassword(fakes.Password("tenant-key"), "db", "thor", 1, 32); got != want {
		t.Errorf("thor's rotated database password = %q; want %q", got, want)
	}
	if a, b := rotated.All()["docker:index/network:Network::thor-net"], upgraded.All()["docker:index/network:Network::thor-net"]; !a.DeepEquals(b) {
		t.Errorf("thor's network changed with its rotation: %v, was %v", a, b)
	}
	if got, want := dbPassword(rotated, "potter"), fakes.TenantPasswords("potter")[0]; got != want {
		t.Errorf("potter's database password = %q after thor's rotation; want it unchanged, %q", got, want)
	}
}

// walkPlain calls f with every string in v that is not under a secret.
func walkPlain(v resource.PropertyValue, f func(string)) {
	switch {
	case v.IsSecret():
		return
	case v.IsString():
		f(v.StringValue())
	case v.IsArray():
		for _, e := range v.ArrayValue() {
			walkPlain(e, f)
		}
	case v.IsObject():
		for _, e := range v.ObjectValue() {
			walkPlain(e, f)
		}
	}
}

// TestOutputs ensures each tenant exports its URL and admin user, the admin
// password is a secret, and the router URL resolves once its config is live.
func TestOutputs(t *testing.T) {
	var (
		wg                   sync.WaitGroup
		url, user, routerURL string
		pwSecret             bool
	)
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		s, err := readConfig(ctx)
		if err != nil {
			return err
		}
		d, err := declare(ctx, s, newMocks())
		if err != nil {
			return err
		}
		thor := d.Tenants["thor"]
		wg.Add(2)
		pulumi.All(thor.URL, thor.AdminUser, d.Router.URL).ApplyT(func(v []any) error {
			url, user, routerURL = v[0].(string), v[1].(string), v[2].(string)
			wg.Done()
			return nil
		})
		thor.AdminPassword.ApplyT(func(string) error {
			pwSecret = pulumi.IsSecret(thor.AdminPassword)
			wg.Done()
			return nil
		})
		return nil
	}, pulumi.WithMocks("polls", "dev", newMocks()), func(info *pulumi.RunInfo) {
		info.Config = map[string]string{"polls:tenants": tenantList("thor")}
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if url != "http://thor.polls.local:8080/" || user != "admin" || routerURL != "http://localhost:8080/" || !pwSecret {
		t.Errorf("outputs = %q, %q, %q, secret=%v; want thor's URL, admin, the router URL and a secret password", url, user, routerURL, pwSecret)
	}
}

// TestMigrationFailureFailsThatTenant ensures a migration that exits non-zero
// fails the run with the tenant's name and the demultiplexed log, and the
// failing tenant's app is never created while the others are.
func TestMigrationFailureFailsThatTenant(t *testing.T) {
	m := newMocks()
	m.FailMigration = "potter"
	err := run(t, m, map[string]string{"tenants": tenantList("thor", "potter")})
	if err == nil {
		t.Fatal("program succeeded; want the failed migration to fail it")
	}
	for _, want := range []string{"tenant potter: migration container exited with status 1", "applying 0001_init.sql\nerror: relation \"polls\" already exists"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error = %q; want it to contain %q", err, want)
		}
	}
	if strings.ContainsRune(err.Error(), 0) {
		t.Errorf("error still carries Docker's stream headers: %q", err)
	}
	if _, ok := m.All()["docker:index/container:Container::thor-app"]; !ok {
		t.Error("thor's app was not declared; another tenant's failure must not block it")
	}
	if _, ok := m.All()["docker:index/container:Container::potter-app"]; ok {
		t.Error("potter's app was created although its migration failed")
	}
}

// TestMigrationsInApp ensures polls:migrations app declares no migration
// container: each app runs `serve -migrate` with the admin account's user
// in its environment and its password as a secret file, and nothing else
// of the tenant changes.
func TestMigrationsInApp(t *testing.T) {
	m := newMocks()
	if err := run(t, m, map[string]string{"tenants": tenantList("thor", "potter"), "migrations": "app"}); err != nil {
		t.Fatal(err)
	}
	all := m.All()
	for _, tn := range []string{"thor", "potter"} {
		if _, ok := all["docker:index/container:Container::"+tn+"-migrate"]; ok {
			t.Errorf("%s has a migration container with polls:migrations app", tn)
		}
		app := all["docker:index/container:Container::"+tn+"-app"]
		var cmd, env, files []string
		for _, c := range app["command"].ArrayValue() {
			cmd = append(cmd, c.StringValue())
		}
		for _, e := range app["envs"].ArrayValue() {
			env = append(env, e.StringValue())
		}
		for _, u := range app["uploads"].ArrayValue() {
			if !u.ObjectValue()["content"].IsSecret() {
				t.Errorf("%s-app uploads %s as plain text", tn, u.ObjectValue()["file"].StringValue())
			}
			files = append(files, u.ObjectValue()["file"].StringValue())
		}
		if want := []string{"serve", "-migrate"}; !slices.Equal(cmd, want) {
			t.Errorf("%s-app command = %q; want %q", tn, cmd, want)
		}
		if !slices.Contains(env, "ADMIN_USER=admin") || !slices.Contains(env, "ADMIN_PASSWORD_FILE="+contract.AdminPasswordFile) {
			t.Errorf("%s-app env = %q; want the admin user and its password file", tn, env)
		}
		if want := []string{contract.DatabaseURLFile, contract.AdminPasswordFile}; !slices.Equal(files, want) {
			t.Errorf("%s-app uploads %q; want %q", tn, files, want)
		}
	}
	if got, want := m.CountByType()["docker:index/container:Container"], 4+3*2; got != want {
		t.Errorf("containers = %d; want %d (router, config, backup gateway, its logins; db, app, agent per tenant)", got, want)
	}

	// thor restored: its app carries the restore's label, as its migration
	// would, so a new version migrates the restored database.
	restoring := newMocks()
	withAgent(restoring, "")
	if err := run(t, restoring, map[string]string{"tenants": `{"thor":{"restore":"latest"}}`, "migrations": "app"}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{}
	for _, l := range restoring.All()["docker:index/container:Container::thor-app"]["labels"].ArrayValue() {
		labels[l.ObjectValue()["label"].StringValue()] = l.ObjectValue()["value"].StringValue()
	}
	if want := contract.RestoreID("thor", "", "latest"); labels["polls.restore"] != want {
		t.Errorf("thor-app's labels while restoring = %v; want polls.restore=%s", labels, want)
	}
}

// uploads returns the files the router's config installer uploads, by name
// (polls.conf, tenants/routes.conf), in their order.
func (m *mocks) uploads() (names []string, content map[string]string) {
	content = map[string]string{}
	in := m.All()["docker:index/container:Container::router-config"]
	if in == nil || !in.HasValue("uploads") {
		return nil, content
	}
	for _, u := range in["uploads"].ArrayValue() {
		name := strings.TrimPrefix(u.ObjectValue()["file"].StringValue(), "/polls/next/")
		names = append(names, name)
		content[name] = u.ObjectValue()["content"].StringValue()
	}
	return names, content
}

// route returns the tenant's servers in the routes the router's config
// installer uploads, or "".
func (m *mocks) route(tenant string) string {
	_, content := m.uploads()
	_, after, ok := strings.Cut(content[router.RoutesFile], "# tenant "+tenant+"\n")
	if !ok {
		return ""
	}
	block, _, _ := strings.Cut(after, "# tenant ")
	return block
}

// declaredNetworks returns the networks the run declared, as the engine
// would list them afterwards.
func (m *mocks) declaredNetworks() []dockerapi.Network {
	var nets []dockerapi.Network
	for key, in := range m.All() {
		if !strings.HasPrefix(key, "docker:index/network:Network::") {
			continue
		}
		n := dockerapi.Network{Name: in["name"].StringValue(), Labels: map[string]string{}, Gateways: map[netip.Prefix]netip.Addr{}}
		if in.HasValue("labels") {
			for _, l := range in["labels"].ArrayValue() {
				n.Labels[l.ObjectValue()["label"].StringValue()] = l.ObjectValue()["value"].StringValue()
			}
		}
		if in.HasValue("ipamConfigs") {
			for _, c := range in["ipamConfigs"].ArrayValue() {
				p := netip.MustParsePrefix(c.ObjectValue()["subnet"].StringValue())
				n.Subnets = append(n.Subnets, p)
				n.Gateways[p] = netip.MustParseAddr(c.ObjectValue()["gateway"].StringValue())
			}
		}
		nets = append(nets, n)
	}
	return nets
}

// declaredContainers returns the containers the run declared, with their
// labels, as the engine would list them afterwards.
func (m *mocks) declaredContainers() []dockerapi.ContainerSummary {
	var out []dockerapi.ContainerSummary
	for key, in := range m.All() {
		if !strings.HasPrefix(key, "docker:index/container:Container::") {
			continue
		}
		c := dockerapi.ContainerSummary{Labels: map[string]string{}, State: "running"}
		if in["name"].IsString() {
			c.Name = in["name"].StringValue()
		}
		if in.HasValue("labels") {
			for _, l := range in["labels"].ArrayValue() {
				if v := l.ObjectValue()["value"]; v.IsString() {
					c.Labels[l.ObjectValue()["label"].StringValue()] = v.StringValue()
				}
			}
		}
		out = append(out, c)
	}
	return out
}

// TestSubnets ensures tenants get distinct /28s from polls:subnetPool, keep
// them when tenants are added before them, and that a pool colliding with a
// network on the engine fails before anything is registered.
func TestSubnets(t *testing.T) {
	subnetOf := func(m *mocks, tenant string) string {
		return m.All()["docker:index/network:Network::"+tenant+"-net"]["ipamConfigs"].ArrayValue()[0].ObjectValue()["subnet"].StringValue()
	}
	first := newMocks()
	if err := run(t, first, map[string]string{"tenants": tenantList("thor", "potter")}); err != nil {
		t.Fatal(err)
	}
	if got := []string{subnetOf(first, "potter"), subnetOf(first, "thor")}; !cmp.Equal(got, []string{"10.230.0.0/28", "10.230.0.16/28"}) {
		t.Errorf("subnets of potter, thor = %v; want the first two /28s of 10.230.0.0/16", got)
	}
	second := newMocks()
	second.NetworkList = first.declaredNetworks()
	if err := run(t, second, map[string]string{"tenants": tenantList("thor", "potter", "albus")}); err != nil {
		t.Fatal(err)
	}
	if subnetOf(second, "thor") != subnetOf(first, "thor") || subnetOf(second, "potter") != subnetOf(first, "potter") || subnetOf(second, "albus") != "10.230.0.32/28" {
		t.Errorf("after adding albus: thor %s, potter %s, albus %s; want thor and potter unchanged, albus the next free /28",
			subnetOf(second, "thor"), subnetOf(second, "potter"), subnetOf(second, "albus"))
	}

	clash := newMocks()
	clash.NetworkList = []dockerapi.Network{{Name: "corp-vpn", Subnets: []netip.Prefix{netip.MustParsePrefix("10.230.4.0/24")}}}
	err := run(t, clash, map[string]string{"tenants": tenantList("thor")})
	if err == nil || !strings.Contains(err.Error(), "polls:subnetPool: 10.230.0.0/16 overlaps network corp-vpn (10.230.4.0/24)") {
		t.Fatalf("error = %v; want the pool's overlap with corp-vpn named", err)
	}
	counts := clash.CountByType()
	delete(counts, "pulumi:pulumi:Stack")
	if len(counts) != 0 {
		t.Errorf("resources registered despite the overlapping pool: %v", counts)
	}
}

// TestNewTenantsGetLongerWaits ensures a tenant's database and app are
// waited for longer the more tenants the update deploys for the first time
// (platform.StartWait), on both platforms: every new tenant's database
// initialises at once, sharing the host.
func TestNewTenantsGetLongerWaits(t *testing.T) {
	check := func(name string, m *mocks, db, app time.Duration) {
		t.Helper()
		for _, tn := range []string{"thor", "potter"} {
			if got := m.Within[fakes.ID(tn+"-db")]; got != db {
				t.Errorf("%s: %s's database waited for within %s; want %s", name, tn, got, db)
			}
			if got := m.Within[fakes.ID(tn+"-app")]; got != app {
				t.Errorf("%s: %s's app waited for within %s; want %s", name, tn, got, app)
			}
		}
	}
	first := newMocks()
	if err := run(t, first, map[string]string{"tenants": tenantList("thor", "potter")}); err != nil {
		t.Fatal(err)
	}
	check("two new tenants", first, 3*time.Minute+2*platform.PerNewTenant, 2*time.Minute+2*platform.PerNewTenant)

	grown := newMocks()
	grown.NetworkList = first.declaredNetworks()
	if err := run(t, grown, map[string]string{"tenants": tenantList("thor", "potter", "albus", "hermione", "ron")}); err != nil {
		t.Fatal(err)
	}
	check("three added to two", grown, 3*time.Minute+3*platform.PerNewTenant, 2*time.Minute+3*platform.PerNewTenant)

	same := newMocks()
	same.NetworkList = first.declaredNetworks()
	if err := run(t, same, map[string]string{"tenants": tenantList("thor", "potter")}); err != nil {
		t.Fatal(err)
	}
	check("none new", same, 3*time.Minute, 2*time.Minute)

	cluster := swarmMocks()
	if err := run(t, cluster, swarmConfig(), "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	check("Swarm, three new tenants", cluster, 3*time.Minute+3*platform.PerNewTenant, 3*time.Minute+3*platform.PerNewTenant)
}

// TestUnhealthyAppKeepsTheOldRoute ensures an app that never becomes
// healthy fails the run naming the tenant and the health check's output,
// while the router's config, with every tenant's route, is declared: the
// route names the tenant's app name, which its old version keeps until a
// new one is healthy.
func TestUnhealthyAppKeepsTheOldRoute(t *testing.T) {
	m := newMocks()
	m.SickApp = "potter"
	err := run(t, m, map[string]string{"tenants": tenantList("thor", "potter")})
	if err == nil {
		t.Fatal("program succeeded; want potter's unhealthy app to fail it")
	}
	for _, want := range []string{"tenant potter: app container potter-app-1a2b3c4 is unhealthy", "healthcheck: database: connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error = %q; want it to contain %q", err, want)
		}
	}
	if m.route("thor") == "" || m.route("potter") == "" {
		_, content := m.uploads()
		t.Errorf("the router's routes are\n%s\nwant thor's and potter's: another tenant's failure must not block it", content[router.RoutesFile])
	}
}

// TestAppJoinsItsNameThenRetiresTheOld ensures a tenant's route names the
// app's fixed name on the edge network and the tenant's own port (kept from
// its running app, or a new one for an app from before ports), its app
// takes that name only once healthy, and the tenant's other running app
// containers (the version the release replaced) are stopped only after
// that; an unhealthy app takes no name and stops nothing.
func TestAppJoinsItsNameThenRetiresTheOld(t *testing.T) {
	m := newMocks()
	m.SickApp = "potter"
	app := func(tenant, id, state string) dockerapi.ContainerSummary {
		return dockerapi.ContainerSummary{ID: id, Name: id, State: state, Labels: map[string]string{
			contract.LabelStack: "polls-dev", contract.LabelTenant: tenant, contract.LabelRole: "app",
		}}
	}
	m.ContainerList = []dockerapi.ContainerSummary{
		app("thor", "thor-old", "running"), app("thor", "thor-older", "exited"),
		app("potter", "potter-old", "running"), app("thor", fakes.ID("thor-app"), "running"),
	}
	// thor's current version listens on a port of its own; potter's is
	// from before per-tenant ports.
	m.ContainerList[0].Labels[contract.LabelPort] = "20007"
	if err := run(t, m, map[string]string{"tenants": tenantList("thor", "potter")}); err == nil {
		t.Fatal("program succeeded; want potter's unhealthy app to fail it")
	}
	if want := []string{"polls-dev-edge " + fakes.ID("thor-app") + " polls-dev-thor-app"}; fmt.Sprint(m.Joined) != fmt.Sprint(want) {
		t.Errorf("Connect calls = %q; want %q", m.Joined, want)
	}
	if want := []string{"thor-old"}; fmt.Sprint(m.Stopped) != fmt.Sprint(want) {
		t.Errorf("stopped %q; want %q (thor's replaced app only)", m.Stopped, want)
	}
	if !strings.Contains(m.route("thor"), "http://polls-dev-thor-app:20007;") {
		t.Errorf("thor's route does not send to its app's name on the port thor holds:\n%s", m.route("thor"))
	}
	// Each app listens on its tenant's port and says so in its label.
	for tenant, port := range map[string]string{"thor": "20007", "potter": "20000"} {
		in := m.All()["docker:index/container:Container::"+tenant+"-app"]
		if env := fmt.Sprint(in["envs"].ArrayValue()); !strings.Contains(env, "LISTEN_ADDR=:"+port) {
			t.Errorf("%s's app environment %s; want LISTEN_ADDR=:%s", tenant, env, port)
		}
		labelled := false
		for _, l := range in["labels"].ArrayValue() {
			labelled = labelled || l.ObjectValue()["label"].StringValue() == contract.LabelPort && l.ObjectValue()["value"].StringValue() == port
		}
		if !labelled {
			t.Errorf("%s's app does not carry %s=%s", tenant, contract.LabelPort, port)
		}
	}
	for _, n := range m.All()["docker:index/container:Container::thor-app"]["networksAdvanced"].ArrayValue() {
		if name := n.ObjectValue()["name"].StringValue(); strings.HasSuffix(name, "-edge") {
			t.Errorf("thor's app is declared on the edge network %s; it must join it only once healthy", name)
		}
	}
}

// TestInvalidConfigRegistersNothing ensures bad config stops the program
// before the first resource, with the key named.
func TestInvalidConfigRegistersNothing(t *testing.T) {
	tests := []struct {
		name    string
		config  map[string]string
		secrets []string
		want    string
	}{
		{"bad tenant", map[string]string{"tenants": `["thor","Potter"]`}, nil, `polls:tenants[1]: name "Potter"`},
		{"plain-text TLS key", map[string]string{"tlsKey": "x"}, nil, "polls:tlsKey is stored in plain text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMocks()
			err := run(t, m, tt.config, tt.secrets...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v; want one containing %q", err, tt.want)
			}
			counts := m.CountByType()
			delete(counts, "pulumi:pulumi:Stack")
			if len(counts) != 0 {
				t.Errorf("resources registered despite invalid config: %v", counts)
			}
		})
	}
}

// BenchmarkProgram measures program evaluation under mocks for 10, 100 and
// 1000 tenants, reporting the cost per tenant so sizes compare directly.
func BenchmarkProgram(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("tenant%d", i)
		}
		cfg := map[string]string{"tenants": tenantList(names...)}
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if err := run(b, newMocks(), cfg); err != nil {
					b.Fatal(err)
				}
			}
			// Per-tenant cost: flat across sizes means evaluation is linear.
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/tenant")
		})
	}
}

// TestReplacementOptions ensures every resource with a fixed Docker name is
// replaced delete-first (Docker refuses a second container or network of the
// same name), containers whose init or health check changes are replaced
// rather than falsely updated, and tenant data volumes are retained.
func TestReplacementOptions(t *testing.T) {
	m := newMocks()
	if err := run(t, m, map[string]string{"tenants": tenantList("thor")}); err != nil {
		t.Fatal(err)
	}
	for key, req := range m.Requests() {
		typ, name, _ := strings.Cut(key, "::")
		if req == nil {
			t.Fatalf("%s: no register request recorded", key)
		}
		switch {
		case typ == "docker:index/container:Container" && (name == "thor-app" || name == "thor-migrate"):
			// A release creates the new app beside the old one; the
			// migration too, since a delete-first migration would drag the
			// app it gates into delete-first replacement.
			// The provider asks for delete-first on every container: only an
			// explicit false overrides it.
			if req.GetDeleteBeforeReplace() || !req.GetDeleteBeforeReplaceDefined() {
				t.Errorf("%s is not explicitly replaced create-first; want that for releases without a failed request", key)
			}
			if _, named := m.All()[key]["name"]; named {
				t.Errorf("%s has a fixed Docker name; want a generated one, so old and new can run side by side", key)
			}
		case typ == "docker:index/container:Container", typ == "docker:index/network:Network":
			if !req.GetDeleteBeforeReplace() {
				t.Errorf("%s is not replaced delete-first", key)
			}
		}
		if typ == "docker:index/container:Container" && (name == "thor-db" || name == "thor-app") {
			if got := strings.Join(req.GetReplaceOnChanges(), ","); got != "init,healthcheck" {
				t.Errorf("%s replaceOnChanges = %q; want init,healthcheck", key, got)
			}
		}
		if typ == "docker:index/volume:Volume" && name == "thor-pgdata" && !req.GetRetainOnDelete() {
			t.Errorf("%s is not retained on delete", key)
		}
	}
}

// TestOneConfigHoldsEveryRoute ensures the router's one config installer
// uploads every tenant's route in one file after the shared config, by
// tenant name (a preview shows an added tenant as its lines added), and
// waits for no tenant's resource, so adding a tenant installs the config
// at once, off the new tenant's path.
func TestOneConfigHoldsEveryRoute(t *testing.T) {
	first := newMocks()
	if err := run(t, first, map[string]string{"tenants": tenantList("thor")}); err != nil {
		t.Fatal(err)
	}
	m := newMocks()
	m.NetworkList = first.declaredNetworks()
	if err := run(t, m, map[string]string{"tenants": tenantList("thor", "potter")}); err != nil {
		t.Fatal(err)
	}
	names, content := m.uploads()
	if want := []string{"polls.conf", router.RoutesFile}; !slices.Equal(names, want) {
		t.Errorf("the config installer uploads %q; want %q", names, want)
	}
	if routes := content[router.RoutesFile]; strings.Index(routes, "# tenant potter\n") > strings.Index(routes, "# tenant thor\n") {
		t.Errorf("routes not by tenant name:\n%s", routes)
	}
	for _, tn := range []string{"thor", "potter"} {
		if !strings.Contains(m.route(tn), "server_name "+tn+".polls.local;") {
			t.Errorf("%s's route does not serve its host:\n%s", tn, m.route(tn))
		}
	}
	req := m.Requests()["docker:index/container:Container::router-config"]
	if req == nil {
		t.Fatal("no router-config container registered")
	}
	for _, dep := range req.GetDependencies() {
		if strings.Contains(dep, "::thor-") || strings.Contains(dep, "::potter-") {
			t.Errorf("the config depends on %s; want no tenant's resource", dep)
		}
	}
	for k := range m.All() {
		if strings.HasSuffix(k, "-route") {
			t.Errorf("%s declared; want the routes in the one config", k)
		}
	}
}

// The config installer runs in the router's PID namespace, to signal
// nginx, and in its network namespace, so it costs no namespace of its own.
func TestInstallersJoinTheRouter(t *testing.T) {
	m := newMocks()
	if err := run(t, m, map[string]string{"tenants": tenantList("thor", "potter")}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"router-config"} {
		in := m.All()["docker:index/container:Container::"+name]
		if in == nil {
			t.Fatalf("no %s container registered", name)
		}
		for _, key := range []resource.PropertyKey{"pidMode", "networkMode"} {
			if got := in[key].StringValue(); got != "container:router-id" {
				t.Errorf("%s: %s = %q, want container:router-id (the router container's ID)", name, key, got)
			}
		}
	}
}

// TestNewTenantsGoFirst ensures that in an update adding a tenant, the
// resources of the tenants deployed before are registered only once the
// new tenant is live (its app registered and serving, the router's config
// installed), on one host and on Swarm, and that a new tenant that never
// serves holds them back no longer than holdAtMost (newFirst). With
// nothing new, or in a cold up, nothing is held.
func TestNewTenantsGoFirst(t *testing.T) {
	// before reports the registrations of the tenants in old that come
	// before the new tenant's app; want none.
	before := func(m *mocks, app string, old ...string) []string {
		t.Helper()
		order := m.Order()
		at := slices.IndexFunc(order, func(key string) bool { return strings.HasSuffix(key, "::"+app) })
		if at < 0 {
			t.Fatalf("no %s registered: %v", app, order)
		}
		var early []string
		for _, key := range order[:at] {
			for _, o := range old {
				if strings.Contains(key, "::"+o+"-") {
					early = append(early, key)
				}
			}
		}
		return early
	}
	// released fails the test if run took holdAtMost: the others must go
	// once the new tenant's route is live, not when the bound runs out.
	defer func(d time.Duration) { holdAtMost = d }(holdAtMost)
	holdAtMost = 10 * time.Second
	released := func(what string, start time.Time) {
		t.Helper()
		if d := time.Since(start); d >= holdAtMost {
			t.Errorf("%s: the update took %s, the bound on the hold; want the others released once the new tenant's route is live", what, d.Round(time.Millisecond))
		}
	}
	first := newMocks()
	if err := run(t, first, map[string]string{"tenants": tenantList("thor", "potter")}); err != nil {
		t.Fatal(err)
	}
	grown := newMocks()
	grown.NetworkList = first.declaredNetworks()
	start := time.Now()
	if err := run(t, grown, map[string]string{"tenants": tenantList("thor", "potter", "albus")}); err != nil {
		t.Fatal(err)
	}
	released("one host", start)
	if early := before(grown, "albus-app", "thor", "potter"); len(early) > 0 {
		t.Errorf("one host: registered before the new tenant albus's app: %v; want none of thor's or potter's", early)
	}

	cluster := swarmMocks()
	cluster.ServiceList = []dockerapi.Service{
		{Name: "polls-dev-thor-db", Labels: map[string]string{"polls.stack": "polls-dev", "polls.role": "db", "polls.tenant": "thor", "polls.node": "n2"}},
		{Name: "polls-dev-potter-db", Labels: map[string]string{"polls.stack": "polls-dev", "polls.role": "db", "polls.tenant": "potter", "polls.node": "n1"}},
	}
	start = time.Now()
	if err := run(t, cluster, swarmConfig(), "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	released("Swarm", start)
	if early := before(cluster, "hermione-app", "thor", "potter"); len(early) > 0 {
		t.Errorf("Swarm: registered before the new tenant hermione's app: %v; want none of thor's or potter's", early)
	}

	// A new tenant whose app never serves: the others go after holdAtMost,
	// and the update fails naming it.
	holdAtMost = 300 * time.Millisecond
	sick := newMocks()
	sick.NetworkList = first.declaredNetworks()
	sick.SickApp = "albus"
	start = time.Now()
	err := run(t, sick, map[string]string{"tenants": tenantList("thor", "potter", "albus")})
	if err == nil || !strings.Contains(err.Error(), "tenant albus: app container") {
		t.Errorf("program with albus's new app unhealthy: %v; want it to fail naming albus's app", err)
	}
	if time.Since(start) < holdAtMost {
		t.Errorf("the update ended %s after it began; want the others held back %s", time.Since(start), holdAtMost)
	}
	for _, key := range []string{"docker:index/container:Container::thor-app", "docker:index/container:Container::potter-app"} {
		if _, ok := sick.All()[key]; !ok {
			t.Errorf("%s was not registered: a new tenant that never serves must hold the others back %s at most", key, holdAtMost)
		}
	}
}
