package backup

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// Commit is a transaction's end in the log: its location and time.
type Commit struct {
	LSN  string
	Time time.Time
}

// commitRecord matches pg_waldump's line for a commit or abort, e.g.
// "rmgr: Transaction len (rec/tot): 34/34, tx: 735, lsn: 0/01A7D2D8, prev
// 0/01A7D2A0, desc: COMMIT 2026-11-30 05:52:15.500140 UTC".
var commitRecord = regexp.MustCompile(`lsn: ([0-9A-F]+/[0-9A-F]+), .*desc: (?:COMMIT|ABORT)(?:_PREPARED)? (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC`)

// Commits lists the commits and aborts in the WAL segments of dir, in log
// order, with PostgreSQL's own pg_waldump. Recovery to a time stops at the
// first of them after it; the log's end ends the list (pg_waldump then
// reports an invalid record, which is how a log ends).
func Commits(ctx context.Context, dir string) ([]Commit, error) {
	segs, err := segments(dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return nil, nil
	}
	first, last := segs[0], segs[len(segs)-1]
	if strings.HasSuffix(first, ".partial") || strings.HasSuffix(last, ".partial") {
		return nil, fmt.Errorf("segment %s or %s is partial: complete it first", first, last)
	}
	// Given a start segment only, pg_waldump reads that one segment.
	cmd := exec.CommandContext(ctx, "pg_waldump", "--path", dir, "--rmgr", "Transaction", first, last)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	runErr := cmd.Run()
	var commits []Commit
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := commitRecord.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		t, err := time.Parse("2006-01-02 15:04:05.999999", m[2])
		if err != nil {
			return nil, fmt.Errorf("pg_waldump time %q: %w", m[2], err)
		}
		commits = append(commits, Commit{LSN: m[1], Time: t.UTC()})
	}
	// pg_waldump fails at the end of the log it has; anything else (no
	// segment found, a gap) is an error.
	if runErr != nil && !strings.Contains(stderr.String(), "invalid record length") && !strings.Contains(stderr.String(), "could not find file") && !strings.Contains(stderr.String(), "invalid magic number") {
		return commits, fmt.Errorf("pg_waldump: %v: %s", runErr, lastLines(stderr.String(), 2))
	}
	return commits, nil
}

// StopBefore returns where recovery to target stops: the first commit
// after it, exclusive, and the last commit at or before it. An empty LSN
// means no commit follows the target: replay the whole log.
func StopBefore(commits []Commit, target time.Time) (lsn string, last time.Time) {
	for _, c := range commits {
		if c.Time.After(target) {
			return c.LSN, last
		}
		last = c.Time
	}
	return "", last
}
