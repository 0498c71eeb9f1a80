package placement

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	n1     = Node{Hostname: "n1", Available: true}
	n2     = Node{Hostname: "n2", Available: true}
	n2gone = Node{Hostname: "n2", State: "drain"}
)

// TestPlan ensures databases stay where their data is, pins are honoured
// and new tenants spread over available nodes.
func TestPlan(t *testing.T) {
	tests := []struct {
		name     string
		tenants  []Tenant
		current  map[string]string
		data     map[string][]string
		nodes    []Node
		want     map[string]string
		warnings []string
	}{
		{"new tenants spread, ties by hostname", []Tenant{{Name: "a"}, {Name: "b"}, {Name: "c"}}, nil, nil, []Node{n2, n1},
			map[string]string{"a": "n1", "b": "n2", "c": "n1"}, nil},
		{"existing keep their node, new go to the least loaded", []Tenant{{Name: "a"}, {Name: "b"}, {Name: "c"}}, map[string]string{"a": "n1", "b": "n1"}, nil, []Node{n1, n2},
			map[string]string{"a": "n1", "b": "n1", "c": "n2"}, nil},
		{"pins are honoured and count as load", []Tenant{{Name: "a", Node: "n1"}, {Name: "b"}}, nil, nil, []Node{n1, n2},
			map[string]string{"a": "n1", "b": "n2"}, nil},
		{"a pin equal to where it runs is fine", []Tenant{{Name: "a", Node: "n2"}}, map[string]string{"a": "n2"}, nil, []Node{n1, n2},
			map[string]string{"a": "n2"}, nil},
		{"new tenants avoid a drained node", []Tenant{{Name: "a"}, {Name: "b"}}, nil, nil, []Node{n1, n2gone},
			map[string]string{"a": "n1", "b": "n1"}, nil},
		{"a database on a drained node stays there, with a warning", []Tenant{{Name: "a"}}, map[string]string{"a": "n2"}, nil, []Node{n1, n2gone},
			map[string]string{"a": "n2"}, []string{"tenant a: its database is pinned to node n2, which is drain"}},
		{"removed tenants free their node's load", []Tenant{{Name: "b"}}, map[string]string{"a": "n1"}, nil, []Node{n1, n2},
			map[string]string{"b": "n2"}, nil},
		{"a re-added tenant goes back to the node holding its data", []Tenant{{Name: "a"}, {Name: "b"}}, nil, map[string][]string{"a": {"n2"}}, []Node{n1, n2},
			map[string]string{"a": "n2", "b": "n1"}, nil},
		{"a pin picks among nodes holding data", []Tenant{{Name: "a", Node: "n1"}}, nil, map[string][]string{"a": {"n1", "n2"}}, []Node{n1, n2},
			map[string]string{"a": "n1"}, nil},
		{"a database lost with its node is restored on another", []Tenant{{Name: "a", Node: "n1", Restoring: true}, {Name: "b"}}, map[string]string{"a": "n2", "b": "n1"}, nil, []Node{n1, {Hostname: "n2", State: "down"}},
			map[string]string{"a": "n1", "b": "n1"}, []string{"tenant a: its database moves from node n2 to n1 and is restored there from its backups; its old copy on n2 is never started again"}},
		{"a down node's database is named, with the way to restore it elsewhere", []Tenant{{Name: "a"}}, map[string]string{"a": "n2"}, nil, []Node{n1, {Hostname: "n2", State: "down"}},
			map[string]string{"a": "n2"}, []string{"which is down: it stays down until the node is available again (`docker node update --availability active n2`), as its data is on that node; or bring it up on another node from its backups, losing at most their RPO: `pulumi config set --path 'polls:tenants.a.node' <node>` and `pulumi config set --path 'polls:tenants.a.restore' latest`"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warnings, err := Plan(tt.tenants, tt.current, tt.data, tt.nodes)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if len(warnings) != len(tt.warnings) {
				t.Fatalf("warnings = %q; want %d like %q", warnings, len(tt.warnings), tt.warnings)
			}
			for i, w := range tt.warnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d = %q; want it to contain %q", i, warnings[i], w)
				}
			}
		})
	}
}

// TestPlanRefuses ensures a pin to an unknown node, a pin that would leave
// the data behind, and a cluster with no available node are refused, every
// problem at once, naming the tenant's key and the fix.
func TestPlanRefuses(t *testing.T) {
	_, _, err := Plan([]Tenant{{Name: "a", Node: "n9"}, {Name: "b", Node: "n2"}, {Name: "c"}, {Name: "d"}, {Name: "e", Node: "n2"}},
		map[string]string{"b": "n1"}, map[string][]string{"d": {"n1", "n2"}, "e": {"n1"}}, []Node{{Hostname: "n1", State: "down"}, n2gone})
	if err == nil {
		t.Fatal("Plan = nil error; want one")
	}
	for _, want := range []string{
		`polls:tenants.a: node "n9" is not a node of the cluster: use one of n1, n2`,
		`polls:tenants.b: node is "n2", but the tenant's database and its node-local volume are on "n1": set it back to "n1"`,
		"polls:tenants.c: no Swarm node is available",
		"polls:tenants.d: nodes n1 and n2 each hold data of this tenant",
		`polls:tenants.e: node is "n2", but the tenant's database and its node-local volume are on "n1"`,
		"nothing was changed",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error = %q; want it to contain %q", err, want)
		}
	}
}
