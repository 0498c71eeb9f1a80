package dockerapi

import (
	"testing"
	"time"
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
		{`not json`, false},
	}
	for _, tt := range tests {
		if got := sameSpec([]byte(tt.task), []byte(template)); got != tt.want {
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
	tests := []struct {
		name    string
		status  *updateStatus
		updated time.Time
		want    bool
	}{
		{"no update yet", nil, at(0), false},
		{"updating", &updateStatus{State: "updating", StartedAt: at(1)}, at(0), false},
		{"completed", &updateStatus{State: "completed", StartedAt: at(1), CompletedAt: at(5)}, at(0), false},
		{"rolling back now", &updateStatus{State: "rollback_started", StartedAt: at(3)}, at(3), true},
		{"rolled back: judged by the image", &updateStatus{State: "rollback_completed", StartedAt: at(3), CompletedAt: at(9)}, at(3), false},
		{"paused after this update", &updateStatus{State: "paused", StartedAt: at(1)}, at(0), true},
		{"paused before the spec was updated again", &updateStatus{State: "paused", StartedAt: at(3)}, at(60), false},
	}
	for _, tt := range tests {
		if got := tt.status.failed(tt.updated); got != tt.want {
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
