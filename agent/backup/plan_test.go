package backup

import (
	"strings"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func base(id, gen, end string, t time.Time) Snapshot {
	tags := []string{"kind=base", "gen=" + gen}
	if end != "" {
		tags = append(tags, "end="+end)
	}
	return Snapshot{ID: id, Time: t, Tags: tags}
}

func wal(id, gen string, t time.Time) Snapshot {
	return Snapshot{ID: id, Time: t, Tags: []string{"kind=wal", "gen=" + gen}}
}

// history is two days of backups: g1's base ended at 01:00 on day 1, its
// log was last sent at 01:10 on day 2 (after g2's base ended at 01:05);
// g2's log was last sent at 12:00 on day 2. An unfinished base (no end)
// started at 13:00.
var history = []Snapshot{
	base("b1", "g1", "2026-11-01T01:00:00Z", at("2026-11-01T00:59:00Z")),
	wal("w1a", "g1", at("2026-11-01T12:00:00Z")),
	wal("w1b", "g1", at("2026-11-02T01:10:00Z")),
	base("b2", "g2", "2026-11-02T01:05:00Z", at("2026-11-02T01:04:00Z")),
	wal("w2a", "g2", at("2026-11-02T06:00:00Z")),
	wal("w2b", "g2", at("2026-11-02T12:00:00Z")),
	base("b3", "g3", "", at("2026-11-02T13:00:00Z")),
}

// TestChoose ensures a restore picks the newest generation whose base ended
// before the target, with that generation's newest log, and refuses targets
// no backup covers, naming the bounds.
func TestChoose(t *testing.T) {
	gens := Generations(history)
	if len(gens) != 2 {
		t.Fatalf("Generations gave %d; want 2 (the unfinished base is left out)", len(gens))
	}
	tests := []struct {
		target, caughtUp string
		base, wal        string
		err              string
	}{
		{target: "", base: "b2", wal: "w2b"},
		{target: "2026-11-01T06:00:00Z", base: "b1", wal: "w1b"},
		{target: "2026-11-02T01:03:00Z", base: "b1", wal: "w1b"},
		{target: "2026-11-02T01:06:00Z", base: "b2", wal: "w2b"},
		{target: "2026-11-02T11:59:00Z", base: "b2", wal: "w2b"},
		{target: "2026-11-01T00:30:00Z", err: "before the oldest backup, which restores to 2026-11-01T01:00:00Z"},
		{target: "2026-11-02T12:30:00Z", err: "after the newest archived log (2026-11-02T12:00:00Z)"},
		// The agent had nothing more to send at 14:00: the tenant was idle.
		{target: "2026-11-02T13:30:00Z", caughtUp: "2026-11-02T14:00:00Z", base: "b2", wal: "w2b"},
	}
	for _, tt := range tests {
		var target, caught time.Time
		if tt.target != "" {
			target = at(tt.target)
		}
		if tt.caughtUp != "" {
			caught = at(tt.caughtUp)
		}
		g, err := Choose(gens, target, caught)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Choose(%s) error = %v; want one containing %q", tt.target, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Choose(%s): %v", tt.target, err)
			continue
		}
		if g.Base.ID != tt.base || g.WAL == nil || g.WAL.ID != tt.wal {
			t.Errorf("Choose(%s) = base %s, log %v; want %s, %s", tt.target, g.Base.ID, g.WAL, tt.base, tt.wal)
		}
	}
	if _, err := Choose(nil, time.Time{}, time.Time{}); err == nil || !strings.Contains(err.Error(), "no backup") {
		t.Errorf("Choose with no backups: %v; want \"no backup yet\"", err)
	}
}

// TestRetained ensures retention keeps each generation's newest log only,
// and drops the log of generations whose base is gone.
func TestRetained(t *testing.T) {
	snaps := append([]Snapshot{wal("w0", "g0", at("2026-10-31T00:00:00Z"))}, history...)
	got := strings.Join(Retained(snaps), ",")
	if got != "w0,w1a,w2a" {
		t.Errorf("Retained = %s; want w0,w1a,w2a", got)
	}
}

// TestNextBase ensures base backups follow the tenant's own slot in the
// schedule, and that tenants get different slots.
func TestNextBase(t *testing.T) {
	day := 24 * time.Hour
	last := at("2026-11-02T10:00:00Z")
	next := NextBase("thor", day, last)
	if !next.After(last) || next.Sub(last) > day {
		t.Errorf("NextBase after %s = %s; want within a day after", last, next)
	}
	if again := NextBase("thor", day, next); again.Sub(next) != day {
		t.Errorf("the slot after %s is %s; want a day later", next, again)
	}
	if offset("thor", day) == offset("potter", day) {
		t.Errorf("thor and potter share a slot")
	}
	if !NextBase("thor", day, time.Time{}).IsZero() {
		t.Errorf("a tenant with no base backup must get one at once")
	}
	for _, s := range []string{"5m", "8d", "sometimes"} {
		if _, err := ParseSchedule(s); err == nil {
			t.Errorf("ParseSchedule(%q) accepted", s)
		}
	}
}
