package pgrestore

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUntarRefusesEscapes ensures a tar entry cannot write outside the
// target directory.
func TestUntarRefusesEscapes(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "../evil", Mode: 0o600, Size: 1, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("x"))
	_ = tw.Close()
	if err := Untar(&buf, t.TempDir()); err == nil || !strings.Contains(err.Error(), "leaves the target") {
		t.Fatalf("Untar of ../evil: %v; want refused", err)
	}
}

// TestConfigure ensures recovery is configured to stop before the target
// LSN and promote, replacing an earlier restore's settings that a base
// backup carries.
func TestConfigure(t *testing.T) {
	dir := t.TempDir()
	auto := filepath.Join(dir, "postgresql.auto.conf")
	old := "max_slot_wal_keep_size = '2GB'\n# polls restore old\nrestore_command = 'cp /x/%f %p'\nrecovery_target_lsn = '0/1'\n"
	if err := os.WriteFile(auto, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Configure(dir, "/var/lib/postgresql/data/restore-wal/r2", Plan{ID: "r2", TargetLSN: "0/1A7D400"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(auto)
	got := string(b)
	for _, want := range []string{"max_slot_wal_keep_size = '2GB'", "restore_command = 'cp /var/lib/postgresql/data/restore-wal/r2/%f %p'", "recovery_target_lsn = '0/1A7D400'", "recovery_target_inclusive = off", "recovery_target_action = 'promote'"} {
		if !strings.Contains(got, want) {
			t.Errorf("postgresql.auto.conf lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "'0/1'") || strings.Contains(got, "/x/") {
		t.Errorf("the earlier restore's settings remain:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "recovery.signal")); err != nil {
		t.Errorf("no recovery.signal: %v", err)
	}
	if err := Configure(dir, "/w", Plan{ID: "r3", TargetLSN: "0/1'; DROP"}); err == nil {
		t.Errorf("Configure accepted a target that is not an LSN")
	}
}

// TestCompletePartial ensures the segment pg_receivewal was writing is named
// as recovery asks for it, unless a complete copy exists.
func TestCompletePartial(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"000000010000000000000003.partial", "000000010000000000000002", "000000010000000000000002.partial"} {
		_ = os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600)
	}
	if err := CompletePartial(dir); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, ","); got != "000000010000000000000002,000000010000000000000003" {
		t.Errorf("after CompletePartial: %s", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "000000010000000000000002")); string(b) != "000000010000000000000002" {
		t.Errorf("the complete segment was replaced by the partial one")
	}
}
