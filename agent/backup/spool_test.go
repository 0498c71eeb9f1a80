package backup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSegmentName ensures LSNs map to the segment files PostgreSQL names.
func TestSegmentName(t *testing.T) {
	for lsn, want := range map[string]string{
		"0/2000028":  "000000010000000000000002",
		"0/1A7D2D8":  "000000010000000000000001",
		"1/FF000000": "0000000100000001000000FF",
	} {
		got, err := SegmentName(lsn, 1, 16<<20)
		if err != nil || got != want {
			t.Errorf("SegmentName(%s) = %s, %v; want %s", lsn, got, err, want)
		}
	}
}

// TestTrimSpool ensures a new base trims the segments before its start and
// keeps the rest, partial and history files included.
func TestTrimSpool(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000003.partial", "00000002.history"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := trimSpool(dir, "000000010000000000000002"); err != nil || n != 1 {
		t.Fatalf("trimSpool removed %d, %v; want 1", n, err)
	}
	segs, _ := segments(dir)
	if got := strings.Join(segs, ","); got != "000000010000000000000002,000000010000000000000003.partial" {
		t.Errorf("segments left: %s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "00000002.history")); err != nil {
		t.Errorf("history file removed: %v", err)
	}
}

// TestStopBefore ensures recovery to a time stops before the first commit
// after it, and replays everything when none follows.
func TestStopBefore(t *testing.T) {
	out := `rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/01A7D2D8, prev 0/01A7D2A0, desc: COMMIT 2026-11-30 05:52:15.500140 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:        736, lsn: 0/01A7D350, prev 0/01A7D318, desc: ABORT 2026-11-30 05:53:00.000001 UTC
rmgr: Transaction len (rec/tot):    130/   130, tx:        737, lsn: 0/01A7D400, prev 0/01A7D3C8, desc: COMMIT 2026-11-30 05:54:00.250000 UTC; inval msgs: catcache 7`
	var commits []Commit
	for l := range strings.SplitSeq(out, "\n") {
		m := commitRecord.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("commitRecord does not match %q", l)
		}
		ts, _ := time.Parse("2006-01-02 15:04:05.999999", m[2])
		commits = append(commits, Commit{LSN: m[1], Time: ts})
	}
	lsn, last := StopBefore(commits, at("2026-11-30T05:53:30Z"))
	if lsn != "0/01A7D400" || !last.Equal(commits[1].Time) {
		t.Errorf("StopBefore(05:53:30) = %s, %s; want 0/01A7D400 after the abort at 05:53:00", lsn, last)
	}
	if lsn, _ := StopBefore(commits, at("2026-11-30T06:00:00Z")); lsn != "" {
		t.Errorf("StopBefore after the last commit = %s; want none (replay all)", lsn)
	}
}
