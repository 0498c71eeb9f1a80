package backup

import (
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheck ensures the health check names what is late or failing, and
// only once it has lasted past its limit.
func TestCheck(t *testing.T) {
	now := at("2026-11-02T12:00:00Z")
	healthy := State{
		Tenant: "thor", Schedule: 24 * time.Hour, Started: now.Add(-48 * time.Hour), Updated: now,
		LastBase: &BaseInfo{End: now.Add(-20 * time.Hour)},
		LastWAL:  &WALInfo{Time: now.Add(-5 * time.Second)},
	}
	if p := Check(healthy, now, DefaultLimits); len(p) != 0 {
		t.Fatalf("Check of healthy backups: %v", p)
	}
	tests := []struct {
		name  string
		state func(s *State)
		want  string
	}{
		{"base overdue", func(s *State) { s.LastBase.End = now.Add(-26 * time.Hour) }, "last base backup 26h0m0s ago"},
		{"log unsent", func(s *State) { s.PendingSince = now.Add(-90 * time.Second) }, "write-ahead log waiting to be archived since 2026-11-02T11:58:30Z"},
		{"repository down", func(s *State) {
			s.fail("repository", errors.New("connection refused"), now.Add(-2*time.Minute))
		}, "repository failing since 2026-11-02T11:58:00Z: connection refused"},
		{"agent stuck", func(s *State) { s.Updated = now.Add(-5 * time.Minute) }, "has not updated its state"},
		{"no first base", func(s *State) { s.LastBase = nil }, "no base backup since the agent started"},
	}
	for _, tt := range tests {
		s := healthy
		base := *healthy.LastBase
		s.LastBase = &base
		s.Errors = nil
		tt.state(&s)
		got := strings.Join(Check(s, now, DefaultLimits), "; ")
		if !strings.Contains(got, tt.want) {
			t.Errorf("%s: Check = %q; want it to contain %q", tt.name, got, tt.want)
		}
	}
	// A failure younger than the limit is not reported yet.
	s := healthy
	s.fail("repository", errors.New("timeout"), now.Add(-10*time.Second))
	if p := Check(s, now, DefaultLimits); len(p) != 0 {
		t.Errorf("a 10 s old failure is reported: %v", p)
	}
}

// The state file carries the agent's verdict when it was written, and the
// heartbeat keeps writing it while nothing else does: that file is all
// `pulumi preview` reads of an agent (contract.AgentStatus).
func TestStateFileCarriesTheVerdict(t *testing.T) {
	dir := t.TempDir()
	a := &Agent{statePath: filepath.Join(dir, "state.json"), log: slog.New(slog.DiscardHandler)}
	a.state = State{Tenant: "thor", Started: time.Now().Add(-time.Hour), Schedule: 24 * time.Hour}
	read := func() State {
		t.Helper()
		s, err := LoadState(a.statePath)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a.update(func(s *State) {
		s.fail("repository", errors.New("connection refused"), time.Now().Add(-2*time.Minute))
	})
	got := strings.Join(read().Problems, "; ")
	for _, want := range []string{"repository failing since", "connection refused", "no base backup since the agent started"} {
		if !strings.Contains(got, want) {
			t.Errorf("saved problems %q; want them to contain %q", got, want)
		}
	}
	a.update(func(s *State) {
		s.fail("repository", nil, time.Now())
		s.LastBase = &BaseInfo{End: time.Now()}
	})
	if p := read().Problems; len(p) != 0 {
		t.Errorf("saved problems after the repository came back and a base backup: %v; want none", p)
	}

	// Nothing else writes: the heartbeat does, within its period.
	a.mu.Lock()
	a.state.Updated = time.Now().Add(-time.Minute)
	a.mu.Unlock()
	ctx := t.Context()
	go a.heartbeat(ctx, 200*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for time.Since(read().Updated) > 30*time.Second {
		if time.Now().After(deadline) {
			t.Fatal("the heartbeat did not write the state within 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
