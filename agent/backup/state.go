package backup

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// StateFile is where the agent keeps its state in its spool volume; the
// status and check subcommands, run beside it, read it.
const StateFile = SpoolDir + "/state.json"

// State is what the agent knows of its tenant's backups.
type State struct {
	Tenant string `json:"tenant"`
	// System and Timeline identify the database cluster whose log is being
	// received; a new one (a restore, a volume recreated) starts a new
	// generation.
	System   string `json:"system,omitempty"`
	Timeline int    `json:"timeline,omitempty"`
	// Gen is the current generation; LastBase its base backup.
	Gen      string    `json:"gen,omitempty"`
	LastBase *BaseInfo `json:"lastBase,omitempty"`
	// LastWAL is the newest WAL sent to the repository.
	LastWAL *WALInfo `json:"lastWal,omitempty"`
	// CaughtUp is the last time every WAL received had been sent.
	CaughtUp time.Time `json:"caughtUp,omitzero"`
	// PendingSince is when WAL not yet sent was first seen (zero: none).
	PendingSince time.Time `json:"pendingSince,omitzero"`
	// NextBase is when the next base backup is due.
	NextBase time.Time `json:"nextBase,omitzero"`
	// Schedule is the base backup interval.
	Schedule time.Duration `json:"schedule"`
	// Errors are the current failures by step (database, repository, wal,
	// base, retention), each with since when.
	Errors map[string]Failure `json:"errors,omitempty"`
	// Started is when the agent started; Updated when it wrote this.
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Problems is Check's verdict when it wrote this (the program's
	// contract.AgentStatus reads it, with Updated).
	Problems []string `json:"problems,omitempty"`
}

// BaseInfo describes a base backup.
type BaseInfo struct {
	Snapshot string        `json:"snapshot"`
	Gen      string        `json:"gen"`
	Start    time.Time     `json:"start"`
	End      time.Time     `json:"end"`
	Bytes    int64         `json:"bytes"`
	Added    int64         `json:"added"`
	Took     time.Duration `json:"took"`
	Reason   string        `json:"reason,omitempty"`
}

// WALInfo describes the newest WAL sent.
type WALInfo struct {
	Snapshot string    `json:"snapshot"`
	Gen      string    `json:"gen"`
	Time     time.Time `json:"time"`
	Segments int       `json:"segments"`
}

// Failure is a step's current error.
type Failure struct {
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
	Last    time.Time `json:"last"`
}

// fail records err for step, keeping since when it fails; nil clears it.
func (s *State) fail(step string, err error, now time.Time) {
	if err == nil {
		delete(s.Errors, step)
		return
	}
	if s.Errors == nil {
		s.Errors = map[string]Failure{}
	}
	f, ok := s.Errors[step]
	if !ok {
		f.Since = now
	}
	f.Message, f.Last = err.Error(), now
	s.Errors[step] = f
}

// Save writes the state atomically.
func (s State) Save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// LoadState reads the agent's state.
func LoadState(path string) (State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return State{}, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return s, nil
}

// Limits are how late each kind of backup may be before Check reports it.
type Limits struct {
	// WAL is how long received log may wait unsent: the RPO's bound.
	WAL time.Duration
	// Failure is how long any step may fail before it is reported.
	Failure time.Duration
	// BaseGrace is how long past its schedule a base backup may be late.
	BaseGrace time.Duration
	// FirstBase is how long after start the first base backup may take.
	FirstBase time.Duration
}

// DefaultLimits report what breaks the 60 s RPO within a minute.
var DefaultLimits = Limits{WAL: 60 * time.Second, Failure: 60 * time.Second, BaseGrace: time.Hour, FirstBase: 15 * time.Minute}

// Check returns what is wrong with the tenant's backups at now, one
// sentence each; none means healthy. A state not written for two minutes
// (contract.AgentStaleAfter) is a stuck agent's.
func Check(s State, now time.Time, l Limits) []string {
	var problems []string
	if now.Sub(s.Updated) > 2*time.Minute {
		problems = append(problems, fmt.Sprintf("the agent has not updated its state since %s", s.Updated.Format(time.RFC3339)))
	}
	steps := make([]string, 0, len(s.Errors))
	for step := range s.Errors {
		steps = append(steps, step)
	}
	sort.Strings(steps)
	for _, step := range steps {
		f := s.Errors[step]
		if now.Sub(f.Since) >= l.Failure {
			problems = append(problems, fmt.Sprintf("%s failing since %s: %s", step, f.Since.Format(time.RFC3339), f.Message))
		}
	}
	switch {
	case s.LastBase == nil && now.Sub(s.Started) > l.FirstBase:
		problems = append(problems, fmt.Sprintf("no base backup since the agent started at %s", s.Started.Format(time.RFC3339)))
	case s.LastBase != nil && s.Schedule > 0 && now.Sub(s.LastBase.End) > s.Schedule+l.BaseGrace:
		problems = append(problems, fmt.Sprintf("last base backup %s ago (%s), schedule every %s", age(now, s.LastBase.End), s.LastBase.End.Format(time.RFC3339), s.Schedule))
	}
	if !s.PendingSince.IsZero() && now.Sub(s.PendingSince) > l.WAL {
		last := "never"
		if s.LastWAL != nil {
			last = s.LastWAL.Time.Format(time.RFC3339)
		}
		problems = append(problems, fmt.Sprintf("write-ahead log waiting to be archived since %s (last archived %s)", s.PendingSince.Format(time.RFC3339), last))
	}
	return problems
}

// age is a duration rounded for people.
func age(now, t time.Time) time.Duration {
	d := now.Sub(t)
	switch {
	case d > time.Hour:
		return d.Round(time.Minute)
	default:
		return d.Round(time.Second)
	}
}

// Summary is the status in a few lines for people.
func (s State) Summary(now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tenant %s\n", s.Tenant)
	if s.LastBase != nil {
		fmt.Fprintf(&b, "last base backup: %s (%s ago), %s, took %s, snapshot %.8s\n", s.LastBase.End.Format(time.RFC3339), age(now, s.LastBase.End), humanBytes(s.LastBase.Bytes), s.LastBase.Took.Round(time.Millisecond), s.LastBase.Snapshot)
	} else {
		b.WriteString("last base backup: none yet\n")
	}
	if s.LastWAL != nil {
		fmt.Fprintf(&b, "last archived WAL: %s (%s ago), snapshot %.8s\n", s.LastWAL.Time.Format(time.RFC3339), age(now, s.LastWAL.Time), s.LastWAL.Snapshot)
	} else {
		b.WriteString("last archived WAL: none yet\n")
	}
	if !s.CaughtUp.IsZero() {
		fmt.Fprintf(&b, "all log archived as of: %s\n", s.CaughtUp.Format(time.RFC3339))
	}
	if !s.NextBase.IsZero() {
		fmt.Fprintf(&b, "next base backup: %s\n", s.NextBase.Format(time.RFC3339))
	}
	problems := Check(s, now, DefaultLimits)
	if len(problems) == 0 {
		b.WriteString("health: ok\n")
	}
	for _, p := range problems {
		fmt.Fprintf(&b, "problem: %s\n", p)
	}
	return b.String()
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}
