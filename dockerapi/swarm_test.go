package dockerapi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// TestSameSpec ensures a task counts as running its service's current spec
// when the two differ only in what the engine fills in on the service's
// side (seen on Docker 20.10: Runtime), and not when the spec changed.
func TestSameSpec(t *testing.T) {
	template := `{"ContainerSpec":{"Image":"app@sha256:1","Args":["serve"]},"ForceUpdate":0,"Runtime":"container"}`
	tests := []struct {
		task string
		want bool
	}{
		{`{"ContainerSpec":{"Args":["serve"],"Image":"app@sha256:1"},"ForceUpdate":0}`, true},
		{`{"ContainerSpec":{"Args":["serve"],"Image":"app@sha256:1"},"ForceUpdate":0,"Runtime":"container"}`, true},
		{`{"ContainerSpec":{"Args":["serve"],"Image":"app@sha256:0"},"ForceUpdate":0}`, false},
		{`{"ContainerSpec":{"Args":["serve"],"Image":"app@sha256:1"},"ForceUpdate":1}`, false},
	}
	spec := func(s string) swarm.TaskSpec {
		t.Helper()
		var ts swarm.TaskSpec
		if err := json.Unmarshal([]byte(s), &ts); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return ts
	}
	for _, tt := range tests {
		if got := sameSpec(spec(tt.task), spec(template)); got != tt.want {
			t.Errorf("sameSpec(%s) = %v; want %v", tt.task, got, tt.want)
		}
	}
}

// TestUpdateFailed ensures a rolled-back or paused update fails the wait
// while it is the service's last update, and not once the spec was updated
// again after it.
func TestUpdateFailed(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	ptr := func(s int) *time.Time { t := at(s); return &t }
	tests := []struct {
		name    string
		status  *swarm.UpdateStatus
		updated time.Time
		want    bool
	}{
		{"no update yet", nil, at(0), false},
		{"updating", &swarm.UpdateStatus{State: "updating", StartedAt: ptr(1)}, at(0), false},
		{"completed", &swarm.UpdateStatus{State: "completed", StartedAt: ptr(1), CompletedAt: ptr(5)}, at(0), false},
		{"rolling back now", &swarm.UpdateStatus{State: "rollback_started", StartedAt: ptr(3)}, at(3), true},
		{"rolled back: judged by the image", &swarm.UpdateStatus{State: "rollback_completed", StartedAt: ptr(3), CompletedAt: ptr(9)}, at(3), false},
		{"paused after this update", &swarm.UpdateStatus{State: "paused", StartedAt: ptr(1)}, at(0), true},
		{"paused before the spec was updated again", &swarm.UpdateStatus{State: "paused", StartedAt: ptr(3)}, at(60), false},
	}
	for _, tt := range tests {
		if got := updateFailed(tt.status, tt.updated); got != tt.want {
			t.Errorf("%s: failed = %v; want %v", tt.name, got, tt.want)
		}
	}
}

// TestSameImage ensures images compare by digest where both references
// have one, and a tag matches the same tag with the digest the engine added.
func TestSameImage(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"r:5000/app@sha256:1", "r:5000/app@sha256:1", true},
		{"r:5000/app:latest@sha256:1", "r:5000/app@sha256:1", true},
		{"r:5000/app@sha256:1", "r:5000/app@sha256:2", false},
		{"r:5000/pg:15@sha256:1", "r:5000/pg:15", true},
		{"r:5000/pg:15", "r:5000/pg:16", false},
	}
	for _, tt := range tests {
		if got := sameImage(tt.a, tt.b); got != tt.want {
			t.Errorf("sameImage(%q, %q) = %v; want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
