package backup

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsHandler serves GET /metrics: the tenant's database (up, size,
// connections, memory and disk against their limits) and backups (when
// the last base backup and archived log were, what fails since when), in
// Prometheus' format, each series labelled with the stack and the tenant.
// Rules on them live in Prometheus (package prometheus of the program),
// not here: the agent reports times, not verdicts.
func (a *Agent) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newMetrics(a))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// metrics collects at each scrape.
type metrics struct {
	a     *Agent
	descs map[string]*prometheus.Desc

	// fs is the last look at the data's filesystem, taken at most once a
	// minute: it runs a program in the database's container.
	mu     sync.Mutex
	fs     fsStats
	fsTime time.Time
}

type fsStats struct{ size, free float64 }

// fsEvery is how often the data's filesystem is looked at.
const fsEvery = time.Minute

func newMetrics(a *Agent) *metrics {
	m := &metrics{a: a, descs: map[string]*prometheus.Desc{}}
	labels := prometheus.Labels{"stack": a.cfg.Stack, "tenant": a.cfg.Tenant}
	for name, help := range map[string]string{
		"polls_database_up":                                "1 if the backup agent could connect to the tenant's database and query it.",
		"polls_database_size_bytes":                        "Size of the tenant's database (pg_database_size).",
		"polls_database_connections":                       "Client connections to the tenant's database server.",
		"polls_database_max_connections":                   "The server's max_connections.",
		"polls_database_memory_working_set_bytes":          "Memory the database's container uses, less its inactive file cache (what an out-of-memory kill counts).",
		"polls_database_memory_limit_bytes":                "The database container's memory limit (absent when it has none).",
		"polls_database_filesystem_size_bytes":             "Size of the filesystem the database's data is on.",
		"polls_database_filesystem_free_bytes":             "Free space on the filesystem the database's data is on.",
		"polls_backup_last_base_timestamp_seconds":         "When the last base backup ended (absent before the first).",
		"polls_backup_last_base_bytes":                     "Size of the last base backup's stream.",
		"polls_backup_last_wal_timestamp_seconds":          "When write-ahead log was last sent to the repository.",
		"polls_backup_wal_caught_up_timestamp_seconds":     "The last time all write-ahead log received had been archived: a restore loses at most what came since.",
		"polls_backup_wal_pending_since_timestamp_seconds": "Since when write-ahead log waits to be archived (absent when none waits).",
		"polls_backup_schedule_seconds":                    "How often a base backup is due.",
		"polls_backup_agent_start_timestamp_seconds":       "When the backup agent started.",
	} {
		m.descs[name] = prometheus.NewDesc(name, help, nil, labels)
	}
	m.descs["polls_backup_failing_since_timestamp_seconds"] = prometheus.NewDesc("polls_backup_failing_since_timestamp_seconds",
		"Since when a backup step (database, repository, wal, base, retention) fails; absent while it works.", []string{"step"}, labels)
	return m
}

// Describe sends the descriptions of the metrics.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs {
		ch <- d
	}
}

// Collect reads the state and asks the database.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.descs[name], prometheus.GaugeValue, v, labels...)
	}
	stamp := func(name string, t time.Time) {
		if !t.IsZero() {
			gauge(name, float64(t.UnixMilli())/1000)
		}
	}
	s := m.a.snapshotState()
	if s.LastBase != nil {
		stamp("polls_backup_last_base_timestamp_seconds", s.LastBase.End)
		gauge("polls_backup_last_base_bytes", float64(s.LastBase.Bytes))
	}
	if s.LastWAL != nil {
		stamp("polls_backup_last_wal_timestamp_seconds", s.LastWAL.Time)
	}
	stamp("polls_backup_wal_caught_up_timestamp_seconds", s.CaughtUp)
	stamp("polls_backup_wal_pending_since_timestamp_seconds", s.PendingSince)
	stamp("polls_backup_agent_start_timestamp_seconds", s.Started)
	gauge("polls_backup_schedule_seconds", s.Schedule.Seconds())
	for step, f := range s.Errors {
		gauge("polls_backup_failing_since_timestamp_seconds", float64(f.Since.UnixMilli())/1000, step)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	db, err := m.database(ctx)
	if err != nil {
		m.a.log.Warn("metrics: query the database", "err", err)
		gauge("polls_database_up", 0)
		return
	}
	gauge("polls_database_up", 1)
	gauge("polls_database_size_bytes", db.size)
	gauge("polls_database_connections", db.connections)
	gauge("polls_database_max_connections", db.maxConnections)
	if db.memory >= 0 {
		gauge("polls_database_memory_working_set_bytes", db.memory)
	}
	if db.memoryLimit > 0 {
		gauge("polls_database_memory_limit_bytes", db.memoryLimit)
	}
	if db.fs.size > 0 {
		gauge("polls_database_filesystem_size_bytes", db.fs.size)
		gauge("polls_database_filesystem_free_bytes", db.fs.free)
	}
}

// dbStats is what the database says of itself; memory is -1 when unknown.
type dbStats struct {
	size, connections, maxConnections float64
	memory, memoryLimit               float64
	fs                                fsStats
}

// database asks the tenant's database for its numbers, as the role the
// agent backs it up with: the database's superuser (the official image's
// POSTGRES_USER), which may read server files and run a program on the
// server, and needs both here, as PostgreSQL has no function for its
// container's memory or its filesystem's free space. Nothing is written,
// so no write-ahead log (and no backup) follows from a scrape.
func (m *metrics) database(ctx context.Context) (dbStats, error) {
	conn, err := m.a.db.Connect(ctx, m.a.cfg.DBName)
	if err != nil {
		return dbStats{}, err
	}
	defer conn.Close(ctx)
	var st dbStats
	var size, clients, maxConn int64
	err = conn.QueryRow(ctx, `SELECT pg_database_size(current_database()),
	  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
	  current_setting('max_connections')::bigint`).Scan(&size, &clients, &maxConn)
	if err != nil {
		return dbStats{}, err
	}
	st.size, st.connections, st.maxConnections = float64(size), float64(clients), float64(maxConn)
	st.memory, st.memoryLimit = cgroupMemory(ctx, conn)
	st.fs = m.filesystem(ctx, conn)
	return st, nil
}

// readFile reads a file on the database's server; "" when it cannot.
func readFile(ctx context.Context, conn *pgx.Conn, path string) string {
	var s *string
	if err := conn.QueryRow(ctx, `SELECT pg_read_file($1, 0, 65536, true)`, path).Scan(&s); err != nil || s == nil {
		return ""
	}
	return *s
}

// cgroupMemory reads the database container's memory use, less its
// inactive file cache, and its limit (0 for none), from its cgroup: v2's
// files, or v1's memory controller. use is -1 when neither can be read.
func cgroupMemory(ctx context.Context, conn *pgx.Conn) (use, limit float64) {
	if cur := readFile(ctx, conn, "/sys/fs/cgroup/memory.current"); cur != "" {
		return workingSet(cur, readFile(ctx, conn, "/sys/fs/cgroup/memory.stat"), "inactive_file"),
			memoryLimit(readFile(ctx, conn, "/sys/fs/cgroup/memory.max"))
	}
	if cur := readFile(ctx, conn, "/sys/fs/cgroup/memory/memory.usage_in_bytes"); cur != "" {
		return workingSet(cur, readFile(ctx, conn, "/sys/fs/cgroup/memory/memory.stat"), "total_inactive_file"),
			memoryLimit(readFile(ctx, conn, "/sys/fs/cgroup/memory/memory.limit_in_bytes"))
	}
	return -1, 0
}

// workingSet is usage less the stat file's inactive file cache.
func workingSet(usage, stat, key string) float64 {
	u, err := strconv.ParseFloat(strings.TrimSpace(usage), 64)
	if err != nil {
		return -1
	}
	for l := range strings.SplitSeq(stat, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == key {
			if n, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && n < u {
				return u - n
			}
		}
	}
	return u
}

// memoryLimit reads a cgroup's limit: "max" (v2) or a huge number (v1) is
// none.
func memoryLimit(s string) float64 {
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || n >= 1<<60 {
		return 0
	}
	return n
}

// filesystem returns the size and free space of the filesystem of the
// database's data directory (the server's working directory), looked at
// at most once every fsEvery: `stat -f` run by the server itself.
func (m *metrics) filesystem(ctx context.Context, conn *pgx.Conn) fsStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Since(m.fsTime) < fsEvery {
		return m.fs
	}
	m.fsTime = time.Now()
	const out = "/tmp/polls-agent-statfs"
	// The program reads the row COPY sends it, so COPY never writes to a
	// pipe already closed.
	if _, err := conn.Exec(ctx, `COPY (SELECT 1) TO PROGRAM 'cat >/dev/null; stat -f -c "%S %b %a" . > `+out+`.new && mv `+out+`.new `+out+`'`); err != nil {
		m.a.log.Warn("metrics: stat the database's filesystem", "err", err)
		return m.fs
	}
	var block, blocks, avail float64
	if _, err := fmt.Sscan(readFile(ctx, conn, out), &block, &blocks, &avail); err == nil {
		m.fs = fsStats{size: block * blocks, free: block * avail}
	}
	return m.fs
}
