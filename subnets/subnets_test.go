package subnets

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func p(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestPlan ensures tenants get the lowest free /28s of the pool in name
// order, keep the subnet their network has, and skip whatever another
// network on the engine uses.
func TestPlan(t *testing.T) {
	pool := p("10.230.0.0/16")
	tests := []struct {
		name     string
		tenants  []string
		current  map[string]netip.Prefix
		networks []Network
		want     map[string]netip.Prefix
	}{
		{"fresh, name order", []string{"thor", "potter"}, nil, nil,
			map[string]netip.Prefix{"potter": p("10.230.0.0/28"), "thor": p("10.230.0.16/28")}},
		{"existing keep theirs, new take the lowest free",
			[]string{"potter", "thor", "ahab"},
			map[string]netip.Prefix{"thor": p("10.230.0.16/28"), "potter": p("172.18.0.0/16")},
			[]Network{{Name: "polls-dev-thor-net", Subnets: []netip.Prefix{p("10.230.0.16/28")}}, {Name: "polls-dev-potter-net", Subnets: []netip.Prefix{p("172.18.0.0/16")}}},
			map[string]netip.Prefix{"ahab": p("10.230.0.0/28"), "potter": p("172.18.0.0/16"), "thor": p("10.230.0.16/28")}},
		{"another stack's tenant networks are skipped",
			[]string{"a", "b"}, nil,
			[]Network{{Name: "polls-prod-x-net", Shared: true, Subnets: []netip.Prefix{p("10.230.0.0/28"), p("10.230.0.32/28")}}},
			map[string]netip.Prefix{"a": p("10.230.0.16/28"), "b": p("10.230.0.48/28")}},
		{"networks outside the pool do not matter",
			[]string{"a"}, nil,
			[]Network{{Name: "bridge", Subnets: []netip.Prefix{p("172.17.0.0/16")}}},
			map[string]netip.Prefix{"a": p("10.230.0.0/28")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Plan(pool, tt.tenants, tt.current, tt.networks)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("Plan (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPlanStable ensures adding and removing tenants never moves another
// tenant's subnet, as long as the caller passes the subnets networks have.
func TestPlanStable(t *testing.T) {
	pool := p("10.230.0.0/24")
	current := map[string]netip.Prefix{}
	var networks []Network
	apply := func(tenants ...string) map[string]netip.Prefix {
		t.Helper()
		cur := map[string]netip.Prefix{}
		for _, tn := range tenants {
			if s, ok := current[tn]; ok {
				cur[tn] = s
			}
		}
		got, err := Plan(pool, tenants, cur, networks)
		if err != nil {
			t.Fatalf("Plan(%v): %v", tenants, err)
		}
		// The engine now has the planned networks too; removed tenants'
		// networks are still there while the update runs (deleted last).
		current = got
		for tn, s := range got {
			networks = append(networks, Network{Name: tn, Shared: true, Subnets: []netip.Prefix{s}})
		}
		return got
	}
	first := apply("b", "d")
	second := apply("a", "b", "c", "d")
	if first["b"] != second["b"] || first["d"] != second["d"] {
		t.Errorf("adding a and c moved b or d: %v then %v", first, second)
	}
	third := apply("a", "d", "e")
	if third["a"] != second["a"] || third["d"] != second["d"] {
		t.Errorf("removing b and c moved a or d: %v then %v", second, third)
	}
	if third["e"] == second["b"] || third["e"] == second["c"] {
		t.Errorf("e = %v took the subnet of b or c, whose networks still exist: %v", third["e"], second)
	}
}

// TestPlanErrors ensures a bad, foreign-occupied or too small pool is
// refused naming the key and the fix.
func TestPlanErrors(t *testing.T) {
	tests := []struct {
		name     string
		pool     netip.Prefix
		tenants  []string
		networks []Network
		want     []string
	}{
		{"not IPv4", p("fd00::/64"), nil, nil, []string{"polls:subnetPool", "not an IPv4 network"}},
		{"host bits", p("10.230.0.5/16"), nil, nil, []string{"polls:subnetPool", "host bits", "10.230.0.0/16"}},
		{"smaller than a tenant", p("10.230.0.0/29"), nil, nil, []string{"smaller than one tenant subnet", "/28"}},
		{"overlaps a foreign network", p("172.17.0.0/16"), []string{"a"},
			[]Network{{Name: "bridge", Subnets: []netip.Prefix{p("172.17.0.0/16")}}},
			[]string{"polls:subnetPool: 172.17.0.0/16 overlaps network bridge (172.17.0.0/16)", "pulumi config set polls:subnetPool"}},
		{"too small", p("10.230.0.0/27"), []string{"a", "b", "c"}, nil,
			[]string{"polls:subnetPool: 10.230.0.0/27 holds 2 tenant subnets", "too few for 3 tenants", "larger pool"}},
		{"full of another stack", p("10.230.0.0/27"), []string{"a"},
			[]Network{{Name: "x", Shared: true, Subnets: []netip.Prefix{p("10.230.0.0/27")}}},
			[]string{"too few for 1 tenants"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plan(tt.pool, tt.tenants, nil, tt.networks)
			if err == nil {
				t.Fatalf("Plan succeeded; want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestPlanHundreds ensures a /16 holds far more tenants than Docker's
// default pools allow networks, all distinct.
func TestPlanHundreds(t *testing.T) {
	var names []string
	for i := range 1000 {
		names = append(names, "t"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)))
	}
	got, err := Plan(p("10.230.0.0/16"), names, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Prefix]string{}
	for n, s := range got {
		if o, dup := seen[s]; dup {
			t.Fatalf("%s and %s share %s", n, o, s)
		}
		seen[s] = n
	}
	if len(seen) != len(names) {
		t.Errorf("%d subnets for %d tenants", len(seen), len(names))
	}
}
