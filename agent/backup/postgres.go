package backup

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// DB is how the agent reaches its tenant's database: host, port and role,
// with the password in a pgpass file the PostgreSQL tools and the driver
// read (never an argument or the environment).
type DB struct {
	Host, Port, User string
	// PassFile is a pgpass file (mode 0600) holding the password.
	PassFile string
}

// NewDB writes a pgpass file for database (host:port) and user with the
// password in passwordFile, into dir.
func NewDB(database, user, passwordFile, dir string) (DB, error) {
	host, port, ok := strings.Cut(database, ":")
	if !ok {
		port = "5432"
	}
	pw, err := readSecret(passwordFile)
	if err != nil {
		return DB{}, fmt.Errorf("database password: %w", err)
	}
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace
	pass := filepath.Join(dir, ".pgpass")
	line := fmt.Sprintf("%s:%s:*:%s:%s\n", esc(host), port, esc(user), esc(pw))
	if err := os.WriteFile(pass, []byte(line), 0o600); err != nil {
		return DB{}, err
	}
	return DB{Host: host, Port: port, User: user, PassFile: pass}, nil
}

// env is the environment the PostgreSQL tools connect with.
func (d DB) env() []string {
	return append(os.Environ(), "PGHOST="+d.Host, "PGPORT="+d.Port, "PGUSER="+d.User, "PGPASSFILE="+d.PassFile, "PGDATABASE=postgres", "PGCONNECT_TIMEOUT=5")
}

// Connect opens a connection to database name.
func (d DB) Connect(ctx context.Context, name string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s dbname=%s passfile=%s connect_timeout=5 sslmode=disable", d.Host, d.Port, d.User, name, d.PassFile))
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// Cluster identifies a database cluster and its timeline.
type Cluster struct {
	System   string
	Timeline int
}

// Identify returns the cluster's system identifier and current timeline.
func (d DB) Identify(ctx context.Context) (Cluster, error) {
	conn, err := d.Connect(ctx, "postgres")
	if err != nil {
		return Cluster{}, err
	}
	defer conn.Close(ctx)
	var c Cluster
	err = conn.QueryRow(ctx, `SELECT s.system_identifier::text, c.timeline_id FROM pg_control_system() s, pg_control_checkpoint() c`).Scan(&c.System, &c.Timeline)
	return c, err
}

// Prepare bounds the log a stopped agent's slot may keep on the database's
// disk: past it the slot is given up (a new base backup follows) rather
// than the database filling its volume.
func (d DB) Prepare(ctx context.Context, keep string) error {
	conn, err := d.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var cur string
	if err := conn.QueryRow(ctx, `SELECT current_setting('max_slot_wal_keep_size')`).Scan(&cur); err != nil {
		return err
	}
	if cur == keep {
		return nil
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`ALTER SYSTEM SET max_slot_wal_keep_size = '%s'`, keep)); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `SELECT pg_reload_conf()`)
	return err
}

// Slot is the replication slot the agent streams through: the server keeps
// the log until the agent has received it.
const Slot = "polls_backup"

// Receiver runs pg_receivewal into dir, streaming the log as it is written.
type Receiver struct {
	DB  DB
	Dir string
	// Log receives pg_receivewal's messages.
	Log io.Writer
}

// Run streams until ctx ends or pg_receivewal exits, and returns why.
func (r Receiver) Run(ctx context.Context) error {
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return err
	}
	create := exec.CommandContext(ctx, "pg_receivewal", "--create-slot", "--if-not-exists", "--slot", Slot, "--no-password")
	create.Env = r.DB.env()
	if out, err := create.CombinedOutput(); err != nil {
		return fmt.Errorf("create slot: %w: %s", err, lastLines(string(out), 2))
	}
	cmd := exec.CommandContext(ctx, "pg_receivewal", "-D", r.Dir, "--slot", Slot, "--no-password", "--no-loop", "--status-interval", "5")
	cmd.Env = r.DB.env()
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	// With --no-loop, pg_receivewal's last line is only "disconnected":
	// the cause is on the lines before it.
	var last []string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(r.Log, line)
		last = append(last, line)
		if len(last) > 3 {
			last = last[1:]
		}
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("pg_receivewal exited: %v: %s", err, strings.Join(last, "; "))
}

// DropSlot removes the agent's slot, e.g. after the server gave it up.
func (d DB) DropSlot(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "pg_receivewal", "--drop-slot", "--slot", Slot, "--no-password")
	cmd.Env = d.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("drop slot: %w: %s", err, lastLines(string(out), 2))
	}
	return nil
}

var (
	walStart = regexp.MustCompile(`write-ahead log start point: ([0-9A-F]+/[0-9A-F]+) on timeline (\d+)`)
	walEnd   = regexp.MustCompile(`write-ahead log end point: ([0-9A-F]+/[0-9A-F]+)`)
)

// BaseBackup is a running pg_basebackup: a tar of the whole data directory,
// with the log it needs to be consistent (-X fetch), on its stdout.
type BaseBackup struct {
	cmd    *exec.Cmd
	stderr strings.Builder
	// Out is the tar stream.
	Out io.ReadCloser
}

// StartBaseBackup starts pg_basebackup with a fast checkpoint.
func (d DB) StartBaseBackup(ctx context.Context) (*BaseBackup, error) {
	b := &BaseBackup{}
	b.cmd = exec.CommandContext(ctx, "pg_basebackup", "-D", "-", "-F", "tar", "-X", "fetch", "-c", "fast", "--no-password", "-v", "--label", "polls backup")
	b.cmd.Env = d.env()
	b.cmd.Stderr = &b.stderr
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	b.Out = out
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	return b, nil
}

// Wait waits for pg_basebackup and returns the log's start point (the
// first segment the backup needs) and timeline.
func (b *BaseBackup) Wait() (start string, timeline string, err error) {
	if err := b.cmd.Wait(); err != nil {
		return "", "", fmt.Errorf("pg_basebackup: %w: %s", err, lastLines(b.stderr.String(), 3))
	}
	m := walStart.FindStringSubmatch(b.stderr.String())
	if m == nil || !walEnd.MatchString(b.stderr.String()) {
		return "", "", fmt.Errorf("pg_basebackup gave no log start and end points: %s", lastLines(b.stderr.String(), 3))
	}
	return m[1], m[2], nil
}
