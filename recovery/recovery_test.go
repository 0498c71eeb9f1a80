package recovery

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestOrphans ensures that only the stack's objects the state does not hold
// are planned for removal; that a running app of a tenant the state holds
// waits for the update (its route may point at it) while everything of a
// tenant being added goes first, networks after their containers; that
// Swarm secrets wait for the update; and that other stacks' objects, Swarm
// tasks and volumes are never touched.
func TestOrphans(t *testing.T) {
	const p = "polls-dev"
	stack := func(tenant, role string) map[string]string {
		return labels("polls.stack", p, "polls.tenant", tenant, "polls.role", role)
	}
	objs := []Object{
		// In the state: kept whatever they are.
		{Kind: Container, ID: "c-alpha-app", Name: "alpha-app-1111111", Labels: stack("alpha", "app"), Running: true},
		{Kind: Network, ID: "n-alpha", Name: "polls-dev-alpha-net", Labels: labels("polls.tenant", "alpha")},
		{Kind: Network, ID: "n-edge", Name: "polls-dev-edge"},
		// A release killed after alpha's new app started and its route
		// switched: the new app and its migration are unknown.
		{Kind: Container, ID: "c-alpha-app2", Name: "alpha-app-2222222", Labels: stack("alpha", "app"), Running: true},
		{Kind: Container, ID: "c-alpha-migrate2", Name: "alpha-migrate-2222222", Labels: stack("alpha", "migrate")},
		{Kind: Container, ID: "c-route", Name: "polls-dev-route-alpha", Labels: labels("polls.stack", p, "polls.role", "router-config")},
		// An app that exited serves nothing.
		{Kind: Container, ID: "c-beta-app2", Name: "beta-app-3333333", Labels: stack("beta", "app")},
		// gamma was being added: all of it goes first, the network last.
		{Kind: Network, ID: "n-gamma", Name: "polls-dev-gamma-net", Labels: labels("polls.tenant", "gamma")},
		{Kind: Container, ID: "c-gamma-db", Name: "polls-dev-gamma-db", Labels: stack("gamma", "db"), Running: true},
		{Kind: Container, ID: "c-gamma-app", Name: "gamma-app-4444444", Labels: stack("gamma", "app"), Running: true},
		{Kind: Secret, ID: "s-gamma", Name: "gamma-db-password-5555555", Labels: labels("polls.stack", p, "polls.tenant", "gamma")},
		// A Swarm secret of a tenant the state holds waits.
		{Kind: Secret, ID: "s-alpha", Name: "alpha-db-password-6666666", Labels: labels("polls.stack", p, "polls.tenant", "alpha")},
		{Kind: Service, ID: "v-gamma-db", Name: "polls-dev-gamma-db", Labels: stack("gamma", "db")},
		// The stack's own edge network, unknown (a cold up killed).
		{Kind: Network, ID: "n-edge2", Name: "polls-dev-edge"},
		// Never the stack's: another stack's objects, even one whose
		// prefix starts with this one's; a Swarm task; an unlabelled
		// network of a name the program does not give.
		{Kind: Container, ID: "x-other", Name: "alpha-app-7777777", Labels: labels("polls.stack", "polls-dev-x", "polls.role", "app"), Running: true},
		{Kind: Network, ID: "x-net", Name: "polls-dev-x-alpha-net", Labels: labels("polls.tenant", "alpha")},
		// Stack "polls"'s tenant "dev-alpha": its network's name is this
		// stack's alpha's, its tenant label is not.
		{Kind: Network, ID: "x-net2", Name: "polls-dev-alpha-net", Labels: labels("polls.tenant", "dev-alpha")},
		{Kind: Container, ID: "x-task", Name: "polls-dev-alpha-app.1.abc", Labels: labels("polls.stack", p, "polls.role", "app", "com.docker.swarm.task.id", "abc"), Running: true},
		{Kind: Network, ID: "x-bridge", Name: "bridge"},
	}
	state := map[string]bool{"c-alpha-app": true, "n-alpha": true, "n-edge": true}
	got := Orphans(p, state, objs)
	names := func(os []Object) []string {
		var s []string
		for _, o := range os {
			s = append(s, string(o.Kind)+" "+o.Name)
		}
		return s
	}
	want := struct{ Before, After []string }{
		Before: []string{
			"container alpha-migrate-2222222",
			"container beta-app-3333333",
			"container gamma-app-4444444",
			"container polls-dev-gamma-db",
			"container polls-dev-route-alpha",
			"service polls-dev-gamma-db",
			"secret gamma-db-password-5555555",
			"network polls-dev-edge",
			"network polls-dev-gamma-net",
		},
		After: []string{
			"container alpha-app-2222222",
			"secret alpha-db-password-6666666",
		},
	}
	if diff := cmp.Diff(want, struct{ Before, After []string }{names(got.Before), names(got.After)}); diff != "" {
		t.Errorf("Orphans (-want +got):\n%s", diff)
	}

	if got := Orphans(p, map[string]bool{"c-alpha-app": true}, objs[:1]); len(got.Before)+len(got.After) != 0 {
		t.Errorf("Orphans of a stack whose state holds everything = %+v; want nothing", got)
	}
}

// TestStateIDs ensures the IDs come from `pulumi stack export`'s resources
// (pending operations are not in them), and that an empty or unreadable
// state is refused: with it every object of the stack would be an orphan.
func TestStateIDs(t *testing.T) {
	export := `{"version": 3, "deployment": {"resources": [
		{"urn": "urn:pulumi:dev::polls::pulumi:pulumi:Stack::polls-dev"},
		{"urn": "urn:pulumi:dev::polls::docker:index/container:Container::alpha-app", "id": "c1"},
		{"urn": "urn:pulumi:dev::polls::docker:index/network:Network::alpha-net", "id": "n1"}
	], "pending_operations": [{"resource": {"urn": "urn:pulumi:dev::polls::docker:index/container:Container::beta-app", "id": "c2"}, "type": "creating"}]}}`
	ids, err := StateIDs([]byte(export))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]bool{"c1": true, "n1": true}, ids); diff != "" {
		t.Errorf("StateIDs (-want +got):\n%s", diff)
	}
	for _, bad := range []string{`{"version": 3, "deployment": {}}`, `not json`} {
		if _, err := StateIDs([]byte(bad)); err == nil || !strings.Contains(err.Error(), "state") {
			t.Errorf("StateIDs(%q) error = %v; want one about the state", bad, err)
		}
	}
}

// TestRefreshTargets ensures only containers are refreshed: a refreshed
// Swarm service would be replaced, delete-first, by the next update.
func TestRefreshTargets(t *testing.T) {
	export := `{"version": 3, "deployment": {"resources": [
		{"urn": "urn:pulumi:dev::polls::pulumi:pulumi:Stack::polls-dev", "type": "pulumi:pulumi:Stack"},
		{"urn": "urn:pulumi:dev::polls::polls:index:Tenant$docker:index/container:Container::alpha-app", "type": "docker:index/container:Container", "id": "c1"},
		{"urn": "urn:pulumi:dev::polls::polls:index:Tenant$docker:index/service:Service::beta-db", "type": "docker:index/service:Service", "id": "s1"},
		{"urn": "urn:pulumi:dev::polls::docker:index/network:Network::edge", "type": "docker:index/network:Network", "id": "n1"}
	]}}`
	got, err := RefreshTargets([]byte(export))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"urn:pulumi:dev::polls::polls:index:Tenant$docker:index/container:Container::alpha-app"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RefreshTargets (-want +got):\n%s", diff)
	}
}
