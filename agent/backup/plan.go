package backup

import (
	"fmt"
	"sort"
	"time"
)

// Tags of the snapshots the agent makes. A base backup and the WAL after it
// form a generation (gen=<id>): each WAL snapshot of a generation holds all
// of its log received so far, so the newest one of a generation is all a
// restore within it needs.
const (
	tagKind    = "kind"
	kindBase   = "base"
	kindWAL    = "wal"
	tagGen     = "gen"
	tagEnd     = "end"
	tagStart   = "start"
	tagReason  = "reason"
	tagSystem  = "system"
	tagTimline = "timeline"
)

// Generation is a base backup and the newest WAL snapshot after it.
type Generation struct {
	ID   string
	Base Snapshot
	// End is when the base backup finished: it restores to no earlier
	// moment.
	End time.Time
	// WAL is the newest WAL snapshot of the generation; nil if none yet.
	WAL *Snapshot
}

// Covers is the latest moment the generation restores to: when its newest
// WAL was sent, or its base backup's end.
func (g Generation) Covers() time.Time {
	if g.WAL != nil && g.WAL.Time.After(g.End) {
		return g.WAL.Time
	}
	return g.End
}

// Generations groups snapshots into generations, oldest first. Base
// backups that never finished (no end tag) are left out.
func Generations(snaps []Snapshot) []Generation {
	byID := map[string]*Generation{}
	for _, s := range snaps {
		if s.Tag(tagKind) != kindBase || s.TagTime(tagEnd).IsZero() {
			continue
		}
		byID[s.Tag(tagGen)] = &Generation{ID: s.Tag(tagGen), Base: s, End: s.TagTime(tagEnd)}
	}
	for _, s := range snaps {
		if s.Tag(tagKind) != kindWAL {
			continue
		}
		g, ok := byID[s.Tag(tagGen)]
		if !ok {
			continue
		}
		if g.WAL == nil || s.Time.After(g.WAL.Time) {
			s := s
			g.WAL = &s
		}
	}
	gens := make([]Generation, 0, len(byID))
	for _, g := range byID {
		gens = append(gens, *g)
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i].End.Before(gens[j].End) })
	return gens
}

// Choose returns the generation that restores to target (zero: the latest
// state): the newest whose base ended at or before target. It fails when
// there is no backup, when target is before the oldest base backup ended,
// or after the newest WAL was sent. caughtUp, if set, is a moment at which
// the agent had sent all the log there was: an idle tenant's newest WAL
// snapshot is old, yet restores to any moment up to then.
func Choose(gens []Generation, target, caughtUp time.Time) (Generation, error) {
	if len(gens) == 0 {
		return Generation{}, fmt.Errorf("no backup yet")
	}
	if target.IsZero() {
		return gens[len(gens)-1], nil
	}
	var chosen *Generation
	for i := range gens {
		if !gens[i].End.After(target) {
			chosen = &gens[i]
		}
	}
	if chosen == nil {
		return Generation{}, fmt.Errorf("%s is before the oldest backup, which restores to %s at the earliest", target.Format(time.RFC3339), gens[0].End.Format(time.RFC3339))
	}
	// A later generation cannot restore to target (its base ended after
	// it), and the agent sends a generation's whole log, up to the next
	// base's end, before it starts the next: if the chosen one does not
	// reach the target, nothing does.
	covers := chosen.Covers()
	if chosen.ID == gens[len(gens)-1].ID && caughtUp.After(covers) {
		covers = caughtUp
	}
	if target.After(covers) {
		return Generation{}, fmt.Errorf("%s is after the newest archived log (%s): restore to %s or earlier, or to latest", target.Format(time.RFC3339), covers.Format(time.RFC3339), covers.Format(time.RFC3339))
	}
	return *chosen, nil
}

// Retained returns the snapshots to forget beyond those restic's policy
// forgets: WAL snapshots of a generation older than its newest (which holds
// all they hold), and every WAL snapshot whose base backup is gone.
func Retained(snaps []Snapshot) (forget []string) {
	bases := map[string]bool{}
	newest := map[string]Snapshot{}
	for _, s := range snaps {
		switch s.Tag(tagKind) {
		case kindBase:
			bases[s.Tag(tagGen)] = true
		case kindWAL:
			if n, ok := newest[s.Tag(tagGen)]; !ok || s.Time.After(n.Time) {
				newest[s.Tag(tagGen)] = s
			}
		}
	}
	for _, s := range snaps {
		if s.Tag(tagKind) != kindWAL {
			continue
		}
		gen := s.Tag(tagGen)
		if !bases[gen] || newest[gen].ID != s.ID {
			forget = append(forget, s.ID)
		}
	}
	return forget
}
