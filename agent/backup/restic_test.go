package backup

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// holdLock starts a real restic that takes the repository's exclusive
// lock and then blocks: `key passwd` reading its new password from a FIFO
// nobody writes. It returns once the lock is in the repository, whole:
// restic 0.14's local backend creates the file before it writes it, and
// another restic skips a lock it cannot read (a CI run killed the holder
// in that moment, and `snapshots` then passed the lock).
func holdLock(t *testing.T, ctx context.Context, r Repo, dir string) *exec.Cmd {
	t.Helper()
	fifo := filepath.Join(dir, "never-written")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := r.command(ctx, "key", "passwd", "--new-password-file", fifo)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(30 * time.Second); !lockWritten(t, ctx, r, dir); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("restic key passwd took no readable lock within 30 s")
		}
	}
	return cmd
}

// lockWritten says the repository holds one lock and restic can read it.
func lockWritten(t *testing.T, ctx context.Context, r Repo, dir string) bool {
	l := locks(t, dir)
	if len(l) != 1 {
		return false
	}
	return r.command(ctx, "--no-lock", "cat", "lock", l[0].Name()).Run() == nil
}

func locks(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	l, err := os.ReadDir(filepath.Join(dir, "repo", "locks"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return l
}

// testRepo is a new local repository with its files, as the agent has them.
func testRepo(t *testing.T) (Repo, string) {
	t.Helper()
	if _, err := exec.LookPath("restic"); err != nil {
		t.Skip("restic is not installed (Debian package restic)")
	}
	dir := t.TempDir()
	r := Repo{RepositoryFile: filepath.Join(dir, "repository"), PasswordFile: filepath.Join(dir, "key"), CacheDir: filepath.Join(dir, "cache"), Host: "alpha"}
	if err := os.WriteFile(r.RepositoryFile, []byte(filepath.Join(dir, "repo")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.PasswordFile, []byte("a test key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Init(context.Background()); err != nil {
		t.Fatalf("init: %v", err)
	}
	return r, dir
}

// An agent killed in an exclusive step leaves restic's lock behind. Its
// successor must still start and remove it: the CI run of cfba8e0 saw an
// agent retry `restic cat config` for minutes against such a lock.
func TestInitPassesAKilledPredecessorsLock(t *testing.T) {
	r, dir := testRepo(t)
	ctx := context.Background()
	held := holdLock(t, ctx, r, dir)
	if err := held.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = held.Wait()
	if n := len(locks(t, dir)); n != 1 {
		t.Fatalf("a killed restic left %d locks; want its 1 (the case under test)", n)
	}
	if _, err := r.Snapshots(ctx); err == nil {
		t.Fatal("restic snapshots passed a fresh exclusive lock; want it refused (the case under test)")
	}
	if err := r.Init(ctx); err != nil {
		t.Fatalf("Init with a killed predecessor's lock: %v", err)
	}
	if err := r.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if _, err := r.Snapshots(ctx); err != nil {
		t.Fatalf("restic snapshots after Init and Unlock: %v", err)
	}
}

// A restic stopped through its context (the agent stopping) is
// interrupted, not killed, and removes its own lock.
func TestStoppedResticRemovesItsLock(t *testing.T) {
	r, dir := testRepo(t)
	ctx, cancel := context.WithCancel(context.Background())
	held := holdLock(t, ctx, r, dir)
	// restic writes its lock file a moment before it registers the lock
	// for removal at an interrupt; a stop in that window leaves it (and
	// the next agent's Unlock removes it, as above).
	time.Sleep(time.Second)
	cancel()
	if err := held.Wait(); err == nil {
		t.Fatal("restic key passwd ended without error; want it interrupted")
	}
	if l := locks(t, dir); len(l) != 0 {
		t.Errorf("a stopped restic left %d locks; want none", len(l))
	}
}
