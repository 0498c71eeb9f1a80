package backup

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMetricsFromState ensures /metrics reports the agent's state as times
// Prometheus' rules can judge (the last base backup, the last archived
// log, what fails since when), labelled with the stack and tenant, and a
// database it cannot reach as down, not as an error.
func TestMetricsFromState(t *testing.T) {
	end := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	a := &Agent{
		cfg: Config{Tenant: "thor", Stack: "polls-dev", DBName: "polls"},
		// Nothing listens there: the database is down.
		db:  DB{Host: "127.0.0.1", Port: "1", User: "polls", PassFile: "/nonexistent"},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		state: State{
			Tenant: "thor", Schedule: 24 * time.Hour, Started: end.Add(-time.Hour),
			LastBase: &BaseInfo{End: end, Bytes: 4096},
			LastWAL:  &WALInfo{Time: end.Add(time.Minute)},
			CaughtUp: end.Add(2 * time.Minute),
			Errors:   map[string]Failure{"repository": {Message: "connection refused", Since: end.Add(3 * time.Minute)}},
		},
	}
	at := func(t time.Time) string { return strconv.FormatFloat(float64(t.Unix()), 'g', -1, 64) }
	rec := httptest.NewRecorder()
	a.metricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`polls_backup_last_base_timestamp_seconds{stack="polls-dev",tenant="thor"} ` + at(end),
		`polls_backup_last_base_bytes{stack="polls-dev",tenant="thor"} 4096`,
		`polls_backup_last_wal_timestamp_seconds{stack="polls-dev",tenant="thor"} ` + at(end.Add(time.Minute)),
		`polls_backup_wal_caught_up_timestamp_seconds{stack="polls-dev",tenant="thor"} ` + at(end.Add(2*time.Minute)),
		`polls_backup_failing_since_timestamp_seconds{stack="polls-dev",step="repository",tenant="thor"} ` + at(end.Add(3*time.Minute)),
		`polls_backup_schedule_seconds{stack="polls-dev",tenant="thor"} 86400`,
		`polls_backup_agent_start_timestamp_seconds{stack="polls-dev",tenant="thor"} ` + at(end.Add(-time.Hour)),
		`polls_database_up{stack="polls-dev",tenant="thor"} 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s; got:\n%s", want, body)
		}
	}
	if strings.Contains(body, "polls_backup_wal_pending_since") || strings.Contains(body, "polls_database_size_bytes") {
		t.Errorf("/metrics reports what is not known (nothing pending, no database):\n%s", body)
	}
}

// TestCgroupParsing ensures the working set and limits read from cgroup
// v1 and v2 files come out in bytes, an unlimited limit as none.
func TestCgroupParsing(t *testing.T) {
	if got := workingSet("1000\n", "anon 600\ninactive_file 300\nactive_file 100\n", "inactive_file"); got != 700 {
		t.Errorf("v2 working set = %v; want 700", got)
	}
	if got := workingSet("1000\n", "cache 400\ntotal_inactive_file 250\n", "total_inactive_file"); got != 750 {
		t.Errorf("v1 working set = %v; want 750", got)
	}
	if got := workingSet("garbage", "", "inactive_file"); got != -1 {
		t.Errorf("unreadable usage = %v; want -1", got)
	}
	for in, want := range map[string]float64{"268435456\n": 268435456, "max\n": 0, "9223372036854771712\n": 0, "": 0} {
		if got := memoryLimit(in); got != want {
			t.Errorf("memoryLimit(%q) = %v; want %v", in, got, want)
		}
	}
}
