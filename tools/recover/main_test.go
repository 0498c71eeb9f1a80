package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunRefusesBeforeTouchingTheEngine ensures a missing flag or a state
// that holds nothing stops the command with a message saying what to do,
// before it lists or removes anything: with an empty state every object of
// the stack would look like an orphan.
func TestRunRefusesBeforeTouchingTheEngine(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(empty, []byte(`{"version":3,"deployment":{"resources":[]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// An engine nothing listens on: reaching it would fail differently.
	nowhere := "unix://" + filepath.Join(t.TempDir(), "none.sock")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no prefix", []string{"-state", empty, "-phase", "before"}, "usage: recover -prefix"},
		{"unknown phase", []string{"-prefix", "polls-dev", "-state", empty, "-phase", "during"}, "usage: recover -prefix"},
		{"missing state", []string{"-prefix", "polls-dev", "-state", empty + ".gone", "-phase", "before", "-host", nowhere}, "no such file"},
		{"empty state", []string{"-prefix", "polls-dev", "-state", empty, "-phase", "after", "-host", nowhere}, "holds no resource"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v; want an error containing %q", tt.args, err, tt.want)
			}
		})
	}
}
