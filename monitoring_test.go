package main

import (
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/polls-tenants/polls/contract"
)

// monitoringConfig turns monitoring on, with a webhook and its token, for
// the given tenants.
func monitoringConfig(tenants string) map[string]string {
	return map[string]string{
		"tenants": tenants, "monitoring": "true",
		"alertWebhookUrl": "https://alerts.example.com/hook", "alertWebhookToken": "W3bhookTok3n",
	}
}

// The resources polls:monitoring adds.
var monitoringResources = []string{
	"docker:index/container:Container::alertmanager",
	"docker:index/container:Container::metrics",
	"docker:index/container:Container::monitoring-targets",
	"docker:index/container:Container::prometheus",
	"docker:index/network:Network::monitoring",
	"docker:index/volume:Volume::alertmanager-data",
	"docker:index/volume:Volume::prometheus-data",
	"docker:index/volume:Volume::prometheus-targets",
	"docker:index/volume:Volume::router-metrics",
	"polls:index:Monitoring::monitoring",
}

// TestMonitoringOffCostsNothing ensures that without polls:monitoring (and
// with it at false, as Pulumi passes the default) nothing of it is
// declared, and the router's inputs are exactly those of a stack that never
// heard of it.
func TestMonitoringOffCostsNothing(t *testing.T) {
	plain, off := newMocks(), newMocks()
	if err := run(t, plain, map[string]string{"tenants": tenantList("thor")}); err != nil {
		t.Fatal(err)
	}
	if err := run(t, off, map[string]string{"tenants": tenantList("thor"), "monitoring": "false", "monitoringPort": "9090"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(plain.Keys(), off.Keys()); diff != "" {
		t.Errorf("resources with monitoring false (-none +false):\n%s", diff)
	}
	for _, key := range monitoringResources {
		if _, ok := off.All()[key]; ok {
			t.Errorf("%s declared with monitoring off", key)
		}
	}
	for _, key := range []string{"docker:index/container:Container::router", "docker:index/container:Container::router-config"} {
		in := resource.NewObjectProperty(off.All()[key]).String()
		if strings.Contains(in, "polls-metrics") || strings.Contains(in, "polls_tenant") {
			t.Errorf("%s mentions metrics with monitoring off: %v", key, in)
		}
	}
}

// TestMonitoringResources ensures polls:monitoring true declares the
// exporter, Prometheus, Alertmanager and the agents' list, each where it
// belongs: the exporter on the monitoring network alone with the router's
// metrics volume and the engine's socket read-only; Prometheus on the
// monitoring and backup networks, published on the host's loopback only;
// no app or database on the monitoring network; the router sending its
// lines there.
func TestMonitoringResources(t *testing.T) {
	m := newMocks()
	if err := run(t, m, monitoringConfig(tenantList("thor", "potter")), "polls:alertWebhookToken"); err != nil {
		t.Fatal(err)
	}
	for _, key := range monitoringResources {
		if _, ok := m.All()[key]; !ok {
			t.Errorf("%s not declared", key)
		}
	}
	networksOf := func(name string) []string {
		var out []string
		for _, n := range m.All()["docker:index/container:Container::"+name]["networksAdvanced"].ArrayValue() {
			out = append(out, n.ObjectValue()["name"].StringValue())
		}
		sort.Strings(out)
		return out
	}
	if got := networksOf("metrics"); !cmp.Equal(got, []string{"polls-dev-monitoring"}) {
		t.Errorf("the exporter is on %v; want the monitoring network only", got)
	}
	if got := networksOf("prometheus"); !cmp.Equal(got, []string{"polls-dev-backup", "polls-dev-monitoring"}) {
		t.Errorf("prometheus is on %v; want the monitoring and backup networks", got)
	}
	if got := networksOf("alertmanager"); !cmp.Equal(got, []string{"polls-dev-monitoring"}) {
		t.Errorf("alertmanager is on %v; want the monitoring network only", got)
	}
	for key, in := range m.All() {
		if strings.HasPrefix(key, "docker:index/container:Container::") && slices.ContainsFunc([]string{"-app", "-db", "-migrate"}, func(s string) bool { return strings.HasSuffix(key, s) }) {
			if strings.Contains(in["networksAdvanced"].String(), "monitoring") {
				t.Errorf("%s is on the monitoring network", key)
			}
		}
	}
	exporter := m.All()["docker:index/container:Container::metrics"]
	vols := exporter["volumes"].ArrayValue()
	if len(vols) != 1 || vols[0].ObjectValue()["hostPath"].StringValue() != "/var/run/docker.sock" || !vols[0].ObjectValue()["readOnly"].BoolValue() {
		t.Errorf("the exporter's host volumes = %v; want the engine's socket, read-only, only", vols)
	}
	if got := command(exporter); !strings.Contains(got, "--platform docker") {
		t.Errorf("the exporter's command %s does not say the platform", got)
	}
	ports := m.All()["docker:index/container:Container::prometheus"]["ports"].ArrayValue()
	if len(ports) != 1 || ports[0].ObjectValue()["ip"].StringValue() != "127.0.0.1" || ports[0].ObjectValue()["external"].NumberValue() != 9090 {
		t.Errorf("prometheus publishes %v; want 127.0.0.1:9090 only", ports)
	}
	for _, name := range []string{"metrics", "alertmanager", "monitoring-targets"} {
		if p := m.All()["docker:index/container:Container::"+name]["ports"]; p.IsArray() && len(p.ArrayValue()) > 0 {
			t.Errorf("%s publishes ports %v; want none", name, p)
		}
	}
	router := m.All()["docker:index/container:Container::router"]
	if !strings.Contains(router["mounts"].String(), contract.RouterMetricsDir) {
		t.Errorf("the router does not mount its metrics volume: %v", router["mounts"])
	}
	if !strings.Contains(m.route("thor"), "set $polls_tenant thor;") {
		t.Errorf("thor's route does not name its tenant for the metrics: %v", m.route("thor"))
	}
	var targets []struct {
		Targets []string
		Labels  map[string]string
	}
	for _, u := range m.All()["docker:index/container:Container::monitoring-targets"]["uploads"].ArrayValue() {
		_ = json.Unmarshal([]byte(u.ObjectValue()["content"].StringValue()), &targets)
	}
	if len(targets) != 2 || targets[0].Targets[0] != "polls-dev-potter-backup:7070" || targets[1].Labels["tenant"] != "thor" {
		t.Errorf("the backup agents' list = %+v; want potter's and thor's agents, labelled", targets)
	}
}

// TestMonitoringAddTenant ensures adding a tenant changes, of everything
// monitoring declares, only the agents' list installer: Prometheus,
// Alertmanager and the exporter keep their inputs, so nothing restarts.
func TestMonitoringAddTenant(t *testing.T) {
	before, after := newMocks(), newMocks()
	if err := run(t, before, monitoringConfig(tenantList("thor", "potter")), "polls:alertWebhookToken"); err != nil {
		t.Fatal(err)
	}
	after.NetworkList = before.declaredNetworks()
	if err := run(t, after, monitoringConfig(tenantList("thor", "potter", "hermione")), "polls:alertWebhookToken"); err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, key := range monitoringResources {
		if !before.All()[key].DeepEquals(after.All()[key]) {
			changed = append(changed, key)
		}
	}
	if want := []string{"docker:index/container:Container::monitoring-targets"}; !cmp.Equal(changed, want) {
		t.Errorf("monitoring resources changed by adding a tenant: %v; want %v", changed, want)
	}
}

// TestMonitoringTokenStaysSecret ensures the webhook's token reaches
// Alertmanager only as a secret file, and no input holds it in plain text.
func TestMonitoringTokenStaysSecret(t *testing.T) {
	m := newMocks()
	if err := run(t, m, monitoringConfig(tenantList("thor")), "polls:alertWebhookToken"); err != nil {
		t.Fatal(err)
	}
	for key, in := range m.All() {
		walkPlain(resource.NewObjectProperty(in), func(s string) {
			if strings.Contains(s, "W3bhookTok3n") {
				t.Errorf("%s has the webhook token in a plain input", key)
			}
		})
	}
	found := false
	for _, u := range m.All()["docker:index/container:Container::alertmanager"]["uploads"].ArrayValue() {
		o := u.ObjectValue()
		if o["file"].StringValue() == contract.AlertWebhookTokenFile {
			found = o["content"].IsSecret()
		}
	}
	if !found {
		t.Error("alertmanager has no secret token file")
	}
}

// TestMonitoringExportersOnly ensures polls:monitoring exporters runs the
// exporter alone, for the operator's own Prometheus.
func TestMonitoringExportersOnly(t *testing.T) {
	m := newMocks()
	if err := run(t, m, map[string]string{"tenants": tenantList("thor"), "monitoring": "exporters"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, key := range monitoringResources {
		if _, ok := m.All()[key]; ok {
			got = append(got, key)
		}
	}
	want := []string{"docker:index/container:Container::metrics", "docker:index/network:Network::monitoring", "docker:index/volume:Volume::router-metrics", "polls:index:Monitoring::monitoring"}
	if !cmp.Equal(got, want) {
		t.Errorf("declared %v; want %v", got, want)
	}
}

// TestMonitoringSwarm ensures on Swarm the exporter reads services, and
// everything of monitoring is a container on the manager.
func TestMonitoringSwarm(t *testing.T) {
	m := swarmMocks()
	cfg := swarmConfig()
	maps.Copy(cfg, map[string]string{"monitoring": "true"})
	if err := run(t, m, cfg, "polls:registryPassword"); err != nil {
		t.Fatal(err)
	}
	if got := command(m.All()["docker:index/container:Container::metrics"]); !strings.Contains(got, "--platform swarm") {
		t.Errorf("the exporter's command %s does not read Swarm services", got)
	}
	for key := range m.All() {
		if strings.HasPrefix(key, "docker:index/service:Service::") && (strings.Contains(key, "prometheus") || strings.Contains(key, "metrics")) {
			t.Errorf("%s is a service; want containers on the manager", key)
		}
	}
}

// TestMonitoringBadInput ensures a malformed webhook URL, a token stored
// without --secret and a port the router uses are refused before anything
// is registered, naming the key and the fix.
func TestMonitoringBadInput(t *testing.T) {
	tests := []struct {
		name    string
		config  map[string]string
		secrets []string
		want    string
	}{
		{"malformed URL", map[string]string{"monitoring": "true", "alertWebhookUrl": "alerts.example.com"}, nil, `polls:alertWebhookUrl: "alerts.example.com" is not a webhook URL`},
		{"token in plain text", map[string]string{"monitoring": "true", "alertWebhookUrl": "https://a.example/h", "alertWebhookToken": "tok"}, nil,
			"polls:alertWebhookToken is stored in plain text: set it with `pulumi config set --secret polls:alertWebhookToken"},
		{"the router's port", map[string]string{"monitoring": "true", "monitoringPort": "8080"}, nil, "polls:monitoringPort: 8080 is also polls:httpPort"},
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

// command is a container's command line.
func command(in resource.PropertyMap) string {
	var args []string
	for _, a := range in["command"].ArrayValue() {
		args = append(args, a.StringValue())
	}
	return strings.Join(args, " ")
}
