package backup

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// Repo is the tenant's restic repository. restic encrypts, deduplicates
// and compresses everything it stores; the repository's location (with the
// gateway's login) and its key are read from files, never from arguments.
type Repo struct {
	RepositoryFile string
	PasswordFile   string
	CacheDir       string
	// Host is the snapshots' host name: the tenant.
	Host string
}

// Snapshot is one restic snapshot, as `restic snapshots --json` lists it.
type Snapshot struct {
	ID       string    `json:"id"`
	ShortID  string    `json:"short_id"`
	Time     time.Time `json:"time"`
	Tags     []string  `json:"tags"`
	Paths    []string  `json:"paths"`
	Hostname string    `json:"hostname"`
}

// Tag returns the value of the snapshot's tag key=value.
func (s Snapshot) Tag(key string) string {
	for _, t := range s.Tags {
		if v, ok := strings.CutPrefix(t, key+"="); ok {
			return v
		}
	}
	return ""
}

// TagTime returns the tag key's value read as an RFC 3339 time.
func (s Snapshot) TagTime(key string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s.Tag(key))
	return t
}

// command returns restic with the repository's files and args.
func (r Repo) command(ctx context.Context, args ...string) *exec.Cmd {
	all := []string{"--repository-file", r.RepositoryFile, "--password-file", r.PasswordFile}
	if r.CacheDir != "" {
		all = append(all, "--cache-dir", r.CacheDir)
	}
	cmd := exec.CommandContext(ctx, "restic", append(all, args...)...)
	// Stopped (the agent's own stop, a drill's deadline): interrupted, so
	// that restic removes its lock; killed only if it has not ended 10 s
	// later. A killed restic leaves its lock behind.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// run runs restic with args, stdin and stdout, and returns an error with
// the last lines restic wrote to stderr.
func (r Repo) run(ctx context.Context, stdin io.Reader, stdout io.Writer, args ...string) error {
	cmd := r.command(ctx, args...)
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("restic %s: %w: %s", args[0], err, lastLines(stderr.String(), 3))
	}
	return nil
}

// Init creates the repository unless it exists. restic cannot ask whether
// one exists: when reading its config fails, init is tried, and init refuses
// to overwrite an existing repository, so a wrong key stays an error. The
// config is read without a lock: restic 0.14 locks for `cat`, and a lock
// left by a predecessor killed in an exclusive step (tag, forget, prune)
// would fail that read until the lock turns stale, 30 minutes later, and
// so keep the agent from reaching Unlock, which removes it.
func (r Repo) Init(ctx context.Context) error {
	readErr := r.run(ctx, nil, io.Discard, "cat", "--no-lock", "config")
	if readErr == nil {
		return nil
	}
	initErr := r.run(ctx, nil, io.Discard, "init", "--repository-version", "2")
	if initErr == nil {
		return nil
	}
	if strings.Contains(initErr.Error(), "already") {
		return readErr
	}
	return fmt.Errorf("%w (and %v)", readErr, initErr)
}

// Unlock removes every lock, also those restic cannot tell are stale: a
// killed agent's, taken under another container's host name. Only at the
// agent's start: it is the repository's one user (a replaced agent is gone
// before its successor starts, and drills and restores go through it).
func (r Repo) Unlock(ctx context.Context) error {
	return r.run(ctx, nil, io.Discard, "unlock", "--remove-all")
}

// exclusive runs a command that locks the repository exclusively (tag,
// forget, prune), waiting out another run's lock: restic 0.14 fails at once
// where a later one would wait.
func (r Repo) exclusive(ctx context.Context, args ...string) error {
	var err error
	for attempt := range 5 {
		if err = r.run(ctx, nil, io.Discard, args...); err == nil || !strings.Contains(err.Error(), "lock") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 2 * time.Second):
		}
	}
	return err
}

// summary is the last line of `restic backup --json`.
type summary struct {
	MessageType string `json:"message_type"`
	SnapshotID  string `json:"snapshot_id"`
	DataAdded   int64  `json:"data_added"`
	TotalBytes  int64  `json:"total_bytes_processed"`
}

// backup runs `restic backup --json` with extra args and returns the new
// snapshot's ID and how many bytes it added to the repository.
func (r Repo) backup(ctx context.Context, stdin io.Reader, tags []string, args ...string) (string, int64, error) {
	all := []string{"backup", "--json", "--host", r.Host, "--compression", "auto"}
	for _, t := range tags {
		all = append(all, "--tag", t)
	}
	var out bytes.Buffer
	if err := r.run(ctx, stdin, &out, append(all, args...)...); err != nil {
		return "", 0, err
	}
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var s summary
		if json.Unmarshal(sc.Bytes(), &s) == nil && s.MessageType == "summary" && s.SnapshotID != "" {
			return s.SnapshotID, s.DataAdded, nil
		}
	}
	return "", 0, errors.New("restic backup printed no summary")
}

// BackupStream stores what r yields as the file name in a new snapshot.
func (r Repo) BackupStream(ctx context.Context, in io.Reader, name string, tags []string) (string, int64, error) {
	return r.backup(ctx, in, tags, "--stdin", "--stdin-filename", name)
}

// BackupDir stores directory dir in a new snapshot, reading only what
// changed since parent (if given).
func (r Repo) BackupDir(ctx context.Context, dir, parent string, tags []string) (string, int64, error) {
	args := []string{dir}
	if parent != "" {
		args = append([]string{"--parent", parent}, args...)
	}
	return r.backup(ctx, nil, tags, args...)
}

// Snapshots lists the snapshots carrying every tag given, oldest first.
func (r Repo) Snapshots(ctx context.Context, tags ...string) ([]Snapshot, error) {
	args := []string{"snapshots", "--json", "--host", r.Host}
	if len(tags) > 0 {
		args = append(args, "--tag", strings.Join(tags, ","))
	}
	var out bytes.Buffer
	if err := r.run(ctx, nil, &out, args...); err != nil {
		return nil, err
	}
	var snaps []Snapshot
	if err := json.Unmarshal(out.Bytes(), &snaps); err != nil {
		return nil, fmt.Errorf("restic snapshots: %w", err)
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Time.Before(snaps[j].Time) })
	return snaps, nil
}

// Forget removes snapshots by ID (the data goes at the next Prune).
func (r Repo) Forget(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	return r.exclusive(ctx, append([]string{"forget"}, ids...)...)
}

// ForgetPolicy removes the snapshots with tags that policy does not keep.
func (r Repo) ForgetPolicy(ctx context.Context, tags string, policy ...string) error {
	args := append([]string{"forget", "--host", r.Host, "--tag", tags, "--group-by", "host"}, policy...)
	return r.exclusive(ctx, args...)
}

// Prune deletes the data no snapshot refers to any more.
func (r Repo) Prune(ctx context.Context) error {
	return r.exclusive(ctx, "prune", "--max-unused", "10%")
}

// Dump writes path of snapshot id to w: a file's content, or a directory
// as a tar archive.
func (r Repo) Dump(ctx context.Context, id, path string, w io.Writer) error {
	return r.run(ctx, nil, w, "dump", id, path)
}

// lastLines returns the last n non-empty lines of s, joined by "; ".
func lastLines(s string, n int) string {
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
