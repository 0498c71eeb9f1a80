package backup

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// SlotsDir is where the engine's tenants' agents share their base backup
// slots: one volume, mounted by every agent of the stack (the program
// declares it; contract.SlotsMount).
const SlotsDir = "/slots"

// Slots bound how many base backups run at once on one engine. A base
// backup is the agent's heavy step (pg_basebackup, then restic chunking,
// compressing and encrypting the copy); a cold `pulumi up` of a hundred
// tenants starts a hundred agents, each of which takes its first base
// backup at once, and a hundred of them side by side on two cores starve
// the databases of their health checks. The slots are lock files in the
// shared directory Dir, held with flock(2): the kernel releases a slot
// when its holder's process ends, however it ends, so a killed agent
// never leaves one taken. A base backup that finds no free slot waits for
// one; the log keeps being sent meanwhile.
type Slots struct {
	// Dir holds the lock files; empty means no bound (slotsFor: the agent
	// run where there is no such directory, outside its image).
	Dir string
	// N is how many base backups may run at once.
	N int
	// Poll is how often a waiting agent tries again (with jitter).
	Poll time.Duration
}

// DefaultSlots is one base backup at a time per two cores of the engine's
// host: restic uses more than one core for each.
func DefaultSlots() int { return max(1, runtime.NumCPU()/2) }

// Acquire waits for a free slot and returns its release. waited says it
// had to wait, for the log.
func (s Slots) Acquire(ctx context.Context) (release func(), waited bool, err error) {
	if s.Dir == "" || s.N <= 0 {
		return func() {}, false, nil
	}
	poll := s.Poll
	if poll <= 0 {
		poll = time.Second
	}
	for {
		for i := range s.N {
			f, err := os.OpenFile(filepath.Join(s.Dir, fmt.Sprintf("base-%d.lock", i)), os.O_CREATE|os.O_RDWR, 0o600)
			if err != nil {
				return nil, waited, fmt.Errorf("base backup slots: %w", err)
			}
			// Each open is its own lock: flock(2) locks the open file
			// description, so the agent's own second attempt conflicts too.
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				return func() { f.Close() }, waited, nil
			}
			f.Close()
			if err != syscall.EWOULDBLOCK {
				return nil, waited, fmt.Errorf("base backup slots: lock %s: %w", f.Name(), err)
			}
		}
		waited = true
		// Jitter, so that the waiting agents do not try in step.
		if !sleep(ctx, poll/2+rand.N(poll)) {
			return nil, waited, ctx.Err()
		}
	}
}

// slotsFor returns the slots of the agent: the shared directory when it is
// mounted, else none.
func slotsFor(dir string) Slots {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return Slots{}
	}
	return Slots{Dir: dir, N: DefaultSlots()}
}
