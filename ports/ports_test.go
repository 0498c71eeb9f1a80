package ports

import (
	"reflect"
	"strings"
	"testing"
)

func TestPlan(t *testing.T) {
	cases := []struct {
		name    string
		tenants []string
		held    map[string][]int
		want    map[string]int
	}{
		{"first up: the lowest ports, in the stack's order",
			[]string{"thor", "potter"}, nil,
			map[string]int{"thor": First, "potter": First + 1}},
		{"a tenant keeps its port; a new one takes the lowest free",
			[]string{"thor", "potter", "loki"}, map[string][]int{"potter": {First}},
			map[string]int{"potter": First, "thor": First + 1, "loki": First + 2}},
		{"a removed tenant's app still holds its port",
			[]string{"potter", "loki"}, map[string][]int{"thor": {First}, "potter": {First + 1}},
			map[string]int{"potter": First + 1, "loki": First + 2}},
		{"two versions of one tenant on two ports: it keeps the lower, and the other stays taken",
			[]string{"thor", "loki"}, map[string][]int{"thor": {First + 1, First}},
			map[string]int{"thor": First, "loki": First + 2}},
		{"a port outside the range (an app from before per-tenant ports) is not kept",
			[]string{"thor"}, map[string][]int{"thor": {8000}},
			map[string]int{"thor": First}},
		{"a port two tenants hold is neither's: both move",
			[]string{"thor", "potter"}, map[string][]int{"thor": {First}, "potter": {First}},
			map[string]int{"thor": First + 1, "potter": First + 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Plan(c.tenants, c.held)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Plan(%v, %v) = %v, want %v", c.tenants, c.held, got, c.want)
			}
		})
	}
}

func TestPlanIsFull(t *testing.T) {
	held := map[string][]int{}
	for p := First; p <= Last; p++ {
		held["old"] = append(held["old"], p)
	}
	_, err := Plan([]string{"thor"}, held)
	if err == nil || !strings.Contains(err.Error(), "tenant thor") {
		t.Fatalf("Plan with every port held = %v, want an error naming thor", err)
	}
}

func TestHeld(t *testing.T) {
	apps := []map[string]string{
		{"polls.tenant": "thor", "polls.port": "20001"},
		{"polls.tenant": "thor", "polls.port": "20001"},
		{"polls.tenant": "thor", "polls.port": "20003"},
		{"polls.tenant": "potter"},
		{"polls.tenant": "loki", "polls.port": "eight"},
		{"polls.port": "20005"},
	}
	want := map[string][]int{"thor": {20001, 20003}}
	if got := Held(apps); !reflect.DeepEqual(got, want) {
		t.Errorf("Held = %v, want %v", got, want)
	}
}
