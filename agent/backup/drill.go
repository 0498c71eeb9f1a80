package backup

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/polls-tenants/polls/agent/pgrestore"
)

// Drill is the evidence of a restore drill: the tenant's latest backup
// restored into a scratch database and compared with the live one.
type Drill struct {
	Tenant string `json:"tenant"`
	// Plan is what was restored.
	Plan pgrestore.Plan `json:"plan"`
	// Tables are the row counts per table, live and restored.
	Tables []TableCount `json:"tables"`
	// LiveLastCommit is the live database's last commit when the drill
	// asked for the restore; RestoredLastCommit the restored copy's.
	LiveLastCommit     time.Time `json:"liveLastCommit,omitzero"`
	RestoredLastCommit time.Time `json:"restoredLastCommit,omitzero"`
	// RPO is how much of the live database's commits the copy lacks:
	// LiveLastCommit - RestoredLastCommit, or 0.
	RPO time.Duration `json:"rpo"`
	// Fetch is how long fetching and unpacking took, Recover how long
	// PostgreSQL took to replay the log and promote.
	Fetch   time.Duration `json:"fetch"`
	Recover time.Duration `json:"recover"`
	Bytes   int64         `json:"bytes"`
}

// TableCount is one table's rows, live and restored.
type TableCount struct {
	Table    string `json:"table"`
	Live     int64  `json:"live"`
	Restored int64  `json:"restored"`
}

// RunDrill restores the latest backup of the tenant (through the agent at
// agentURL, which serves restores) into a scratch directory under dir,
// starts a scratch PostgreSQL there on a Unix socket only, compares it with
// the live database dbName, and removes the scratch copy.
func RunDrill(ctx context.Context, cfg Config, db DB, agentURL, dir, dbName string) (Drill, error) {
	d := Drill{Tenant: cfg.Tenant}
	token, err := readSecret(cfg.RestoreTokenFile)
	if err != nil {
		return d, fmt.Errorf("restore token: %w", err)
	}
	live, err := db.Connect(ctx, dbName)
	if err != nil {
		return d, fmt.Errorf("live database: %w", err)
	}
	defer live.Close(ctx)
	d.LiveLastCommit = lastCommit(ctx, live)

	scratch, err := os.MkdirTemp(dir, "drill-")
	if err != nil {
		return d, err
	}
	defer os.RemoveAll(scratch)
	data, walDir := filepath.Join(scratch, "pgdata"), filepath.Join(scratch, "wal")
	agent := pgrestore.Agent{URL: agentURL, Token: token}
	start := time.Now()
	d.Plan, err = agent.Plan(ctx, "latest")
	if err != nil {
		return d, err
	}
	if err := agent.Fetch(ctx, d.Plan, data, walDir); err != nil {
		return d, err
	}
	if err := pgrestore.Configure(data, walDir, d.Plan); err != nil {
		return d, err
	}
	d.Fetch = time.Since(start)
	d.Bytes = dirSize(data)

	// A scratch server: no TCP, its own socket directory, small memory,
	// trusting local connections (the restored pg_hba.conf is the live
	// one's; the scratch copy answers nobody else).
	hba := filepath.Join(scratch, "pg_hba.conf")
	if err := os.WriteFile(hba, []byte("local all all trust\n"), 0o600); err != nil {
		return d, err
	}
	// hot_standby off: no connections until promoted, and none of the live
	// server's limits (max_connections, ...) to match during recovery.
	pg := exec.CommandContext(ctx, "postgres", "-D", data, "-c", "listen_addresses=", "-c", "unix_socket_directories="+scratch,
		"-c", "port=5433", "-c", "hba_file="+hba, "-c", "shared_buffers=16MB", "-c", "hot_standby=off",
		"-c", "archive_mode=off")
	pgLog, err := os.Create(filepath.Join(scratch, "postgres.log"))
	if err != nil {
		return d, err
	}
	defer pgLog.Close()
	pg.Stdout, pg.Stderr = pgLog, pgLog
	pg.Cancel = func() error { return pg.Process.Signal(os.Interrupt) }
	pg.WaitDelay = 30 * time.Second
	start = time.Now()
	if err := pg.Start(); err != nil {
		return d, fmt.Errorf("start the scratch PostgreSQL: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- pg.Wait() }()
	defer func() {
		_ = pg.Process.Signal(os.Interrupt)
		<-exited
		exited <- nil
	}()
	copyDB, err := waitPromoted(ctx, scratch, cfg.User, dbName, pgLog.Name(), exited)
	if err != nil {
		return d, err
	}
	defer copyDB.Close(ctx)
	d.Recover = time.Since(start)
	_ = copyDB.QueryRow(ctx, `SELECT coalesce(pg_last_xact_replay_timestamp(), 'epoch')`).Scan(&d.RestoredLastCommit)
	if d.RestoredLastCommit.Unix() == 0 {
		d.RestoredLastCommit = time.Time{}
	}
	if !d.LiveLastCommit.IsZero() && d.LiveLastCommit.After(d.RestoredLastCommit) && !d.RestoredLastCommit.IsZero() {
		d.RPO = d.LiveLastCommit.Sub(d.RestoredLastCommit)
	}

	tables, err := userTables(ctx, copyDB)
	if err != nil {
		return d, err
	}
	for _, t := range tables {
		tc := TableCount{Table: t}
		if err := count(ctx, copyDB, t, &tc.Restored); err != nil {
			return d, err
		}
		if err := count(ctx, live, t, &tc.Live); err != nil {
			tc.Live = -1
		}
		d.Tables = append(d.Tables, tc)
	}
	return d, nil
}

// lastCommit is the time of the database's last commit, with
// track_commit_timestamp on; zero otherwise.
func lastCommit(ctx context.Context, c *pgx.Conn) time.Time {
	var t *time.Time
	if err := c.QueryRow(ctx, `SELECT (pg_last_committed_xact()).timestamp`).Scan(&t); err != nil || t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// waitPromoted waits for the scratch server to finish recovery.
func waitPromoted(ctx context.Context, socketDir, user, dbName, logPath string, exited chan error) (*pgx.Conn, error) {
	deadline := time.Now().Add(10 * time.Minute)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("the scratch PostgreSQL stopped during recovery (%v); its log:\n%s", err, lastLines(string(b), 10))
		default:
		}
		// The restored cluster has the tenant's role; trust lets it in.
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=5433 user=%s dbname=%s sslmode=disable", socketDir, user, dbName))
		if err != nil {
			return nil, err
		}
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			var inRecovery bool
			if err = c.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err == nil && !inRecovery {
				return c, nil
			}
			c.Close(ctx)
		}
		lastErr = err
		if !sleep(ctx, 200*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	b, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("the scratch copy did not finish recovery in 10 minutes (%v); its log:\n%s", lastErr, lastLines(string(b), 10))
}

// userTables lists the database's own tables, schema-qualified.
func userTables(ctx context.Context, c *pgx.Conn) ([]string, error) {
	rows, err := c.Query(ctx, `SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables
		WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	sort.Strings(tables)
	return tables, err
}

func count(ctx context.Context, c *pgx.Conn, table string, n *int64) error {
	return c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(n)
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// Report writes the drill's evidence for people.
func (d Drill) Report(w io.Writer) {
	fmt.Fprintf(w, "restore drill of tenant %s: latest backup (base %.8s, log %.8s) restored into a scratch database\n", d.Tenant, d.Plan.Base, d.Plan.WAL)
	fmt.Fprintf(w, "fetched and unpacked %s in %s; recovery and promotion took %s\n", humanBytes(d.Bytes), d.Fetch.Round(time.Millisecond), d.Recover.Round(time.Millisecond))
	fmt.Fprintf(w, "%-40s %12s %12s %s\n", "table", "live", "restored", "")
	mismatch := 0
	for _, t := range d.Tables {
		note := ""
		if t.Live != t.Restored {
			note = fmt.Sprintf("differs by %d (writes since the backup)", t.Live-t.Restored)
			mismatch++
		}
		fmt.Fprintf(w, "%-40s %12d %12d %s\n", t.Table, t.Live, t.Restored, note)
	}
	switch {
	case d.LiveLastCommit.IsZero():
		fmt.Fprintln(w, "RPO: unknown (the live database does not track commit times)")
	default:
		fmt.Fprintf(w, "live last commit %s, restored last commit %s: RPO %s\n", d.LiveLastCommit.Format(time.RFC3339Nano), d.RestoredLastCommit.Format(time.RFC3339Nano), d.RPO.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "%d tables compared, %d differ; the scratch copy is removed\n", len(d.Tables), mismatch)
}
