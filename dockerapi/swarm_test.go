package dockerapi

import "testing"

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
