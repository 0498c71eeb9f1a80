package backup

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSlotsBound ensures no more than N holders hold a slot at once, and
// that every waiter gets one in the end.
func TestSlotsBound(t *testing.T) {
	s := Slots{Dir: t.TempDir(), N: 2, Poll: 5 * time.Millisecond}
	var held, most, waited atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			release, w, err := s.Acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			if w {
				waited.Add(1)
			}
			n := held.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			held.Add(-1)
			release()
		})
	}
	wg.Wait()
	if got := most.Load(); got != 2 {
		t.Errorf("at most %d held a slot at once; want 2 (N)", got)
	}
	if waited.Load() == 0 {
		t.Error("no one waited for a slot: 8 holders of 20 ms each on 2 slots must queue")
	}
}

// TestSlotsAcrossProcesses ensures a slot held by another process (another
// agent's container on the same engine) is not taken, and is free once that
// process ends, however it ends: the kernel releases flock(2) locks.
func TestSlotsAcrossProcesses(t *testing.T) {
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("flock(1), from util-linux, is not installed")
	}
	dir := t.TempDir()
	// flock(1) holds the lock while its command runs; the command inherits
	// it, so the whole process group is killed below.
	holder := exec.Command(flock, "--exclusive", filepath.Join(dir, "base-0.lock"), "sleep", "30")
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	kill := func() error { return syscall.Kill(-holder.Process.Pid, syscall.SIGKILL) }
	defer kill()
	s := Slots{Dir: dir, N: 1, Poll: 10 * time.Millisecond}
	// Wait until the other process holds it, then see it refused.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		release, _, err := s.Acquire(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		release()
		if time.Now().After(deadline) {
			t.Fatal("flock(1) never took the slot")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := kill(); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	release, _, err := s.Acquire(ctx)
	if err != nil {
		t.Fatalf("the slot of a killed holder stayed taken: %v", err)
	}
	release()
}

// TestSlotsNone ensures an agent without the shared directory is not
// bounded and never waits.
func TestSlotsNone(t *testing.T) {
	if s := slotsFor(filepath.Join(t.TempDir(), "absent")); s.Dir != "" {
		t.Fatalf("slots without their directory: %+v", s)
	}
	dir := t.TempDir()
	if s := slotsFor(dir); s.Dir != dir || s.N < 1 {
		t.Fatalf("slots of %s: %+v; want the directory and at least one slot", dir, s)
	}
	release, waited, err := Slots{}.Acquire(context.Background())
	if err != nil || waited {
		t.Fatalf("no slots: waited %v, err %v", waited, err)
	}
	release()
}
