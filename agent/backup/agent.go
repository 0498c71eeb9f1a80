package backup

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Agent backs one tenant's database up, continuously.
type Agent struct {
	cfg       Config
	repo      Repo
	db        DB
	log       *slog.Logger
	interval  time.Duration
	walDir    string
	statePath string

	// mu guards state, and serialises what changes the repository's
	// snapshots (base backups, retention) with restores' planning.
	mu    sync.Mutex
	state State
	// work serialises restic runs that write (WAL, base, retention).
	work sync.Mutex

	baseNow   chan chan baseResult
	lastSig   string
	lastPrune time.Time
	// lastRetention is when retention last ran.
	lastRetention time.Time
	segSize       uint64
	plans         *plans
	// slots bound the base backups the engine's agents run at once.
	slots Slots
}

type baseResult struct {
	info BaseInfo
	err  error
}

// New prepares the agent of cfg; its spool is dir.
func New(cfg Config, dir string, log *slog.Logger) (*Agent, error) {
	interval, err := ParseSchedule(cfg.Schedule)
	if err != nil {
		return nil, err
	}
	db, err := NewDB(cfg.Database, cfg.User, cfg.PasswordFile, dir)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg: cfg, db: db, log: log, interval: interval,
		repo:      Repo{RepositoryFile: cfg.RepositoryFile, PasswordFile: cfg.RepoPasswordFile, CacheDir: filepath.Join(dir, "cache"), Host: cfg.Tenant},
		walDir:    filepath.Join(dir, "wal"),
		statePath: filepath.Join(dir, "state.json"),
		baseNow:   make(chan chan baseResult),
		plans:     newPlans(filepath.Join(dir, "restore")),
	}
	if s, err := LoadState(a.statePath); err == nil && s.Tenant == cfg.Tenant {
		a.state = s
	}
	a.state.Tenant, a.state.Schedule, a.state.Started = cfg.Tenant, interval, time.Now().UTC()
	a.state.Errors = map[string]Failure{}
	return a, nil
}

// update changes the state under its lock and saves it.
func (a *Agent) update(f func(s *State)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(&a.state)
	now := time.Now().UTC()
	a.state.Updated = now
	// The verdict goes with the state: `pulumi preview` reads the file
	// through the engine, starting no process in the container.
	a.state.Problems = Check(a.state, now, DefaultLimits)
	if err := a.state.Save(a.statePath); err != nil {
		a.log.Error("save state", "err", err)
	}
}

// snapshot returns a copy of the state.
func (a *Agent) snapshotState() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state
}

// Run backs up until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	srv := &http.Server{Addr: a.cfg.Listen, Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server", "err", err)
		}
	}()
	defer srv.Close()
	a.update(func(*State) {})
	go a.heartbeat(ctx, heartbeat)

	// The repository first: nothing can be kept without it.
	for attempt := 0; ; attempt++ {
		err := a.repo.Init(ctx)
		if err == nil {
			err = a.repo.Unlock(ctx)
		}
		a.update(func(s *State) { s.fail("repository", err, time.Now().UTC()) })
		if err == nil {
			break
		}
		a.log.Warn("repository not ready", "err", err)
		if !sleep(ctx, backoff(attempt)) {
			return ctx.Err()
		}
	}
	a.syncFromRepo(ctx)

	var (
		receiving   bool
		recvDone                       = make(chan error, 1)
		recvCancel  context.CancelFunc = func() {}
		recvAttempt int
		recvSince   time.Time
		// recvQuick counts the streams in a row that ended within
		// seconds of starting (see stuckStream).
		recvQuick int
		// A base backup runs beside the loop, so the log keeps being sent
		// while it does; requests for one wait for the next to start.
		baseRunning bool
		baseDone    = make(chan struct{}, 1)
		waiting     []chan baseResult
	)
	defer func() { recvCancel() }()
	tick := time.NewTicker(a.cfg.WALInterval())
	defer tick.Stop()
	for {
		now := time.Now().UTC()
		// While pg_receivewal streams, the database is up and the same
		// cluster (a restart or a restore ends the stream): it is asked who
		// it is only before streaming starts, not every interval.
		dbUp := receiving
		if !receiving && !baseRunning {
			cluster, err := a.db.Identify(ctx)
			a.update(func(s *State) { s.fail("database", err, now) })
			if err == nil {
				dbUp = true
				if a.segSize == 0 {
					a.segSize = a.walSegmentSize(ctx)
				}
				a.newCluster(ctx, cluster)
				if err := a.db.Prepare(ctx, "2GB"); err != nil {
					a.log.Warn("bound the slot's log", "err", err)
				}
				rctx, cancel := context.WithCancel(ctx)
				recvCancel = cancel
				receiving, recvSince = true, time.Now()
				go func() {
					recvDone <- Receiver{DB: a.db, Dir: a.walDir, Log: logWriter{a.log}}.Run(rctx)
				}()
			}
		}
		// Streaming again for a while: its earlier failure is over. (Only
		// then: each update rewrites the state file, and this runs every
		// interval of every tenant's agent.)
		if _, failing := a.snapshotState().Errors["wal"]; failing && receiving && time.Since(recvSince) > 15*time.Second {
			a.update(func(s *State) { s.fail("wal", nil, now) })
		}
		a.sendWAL(ctx, receiving)
		// Retention that failed (the repository was away) is tried again
		// within minutes, not at the next base backup.
		if _, failing := a.snapshotState().Errors["retention"]; failing && time.Since(a.lastRetention) > 10*time.Minute {
			a.work.Lock()
			a.retention(ctx)
			a.work.Unlock()
		}
		if s := a.snapshotState(); dbUp && !baseRunning && (len(waiting) > 0 || s.Gen == "" || s.NextBase.IsZero() || !now.Before(s.NextBase)) {
			reason := "schedule"
			switch {
			case len(waiting) > 0:
				reason = "on request"
			case s.Gen == "":
				reason = "new generation"
			}
			baseRunning = true
			replies := waiting
			waiting = nil
			go func() {
				info, err := a.base(ctx, reason)
				for _, r := range replies {
					r <- baseResult{info, err}
				}
				baseDone <- struct{}{}
			}()
		}

		select {
		case <-ctx.Done():
			// Stopped (docker stop, a replacement): let pg_receivewal
			// write what it has, and send it, within the grace period.
			recvCancel()
			if receiving {
				select {
				case <-recvDone:
				case <-time.After(5 * time.Second):
				}
			}
			fctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			a.sendWAL(fctx, false)
			cancel()
			return nil
		case err := <-recvDone:
			receiving = false
			recvCancel()
			a.update(func(s *State) { s.fail("wal", err, time.Now().UTC()) })
			a.log.Warn("write-ahead log streaming stopped", "err", err)
			if time.Since(recvSince) < 15*time.Second {
				recvQuick++
			} else {
				recvQuick = 0
			}
			spooled, _ := segments(a.walDir)
			switch {
			case err != nil && strings.Contains(err.Error(), "has already been removed"):
				// The server gave the slot's log up (max_slot_wal_keep_size):
				// the log has a gap, so start over with a new base backup.
				a.log.Warn("the database removed log the agent had not received: new slot, new base backup")
				a.startOver(ctx)
				recvQuick = 0
			case stuckStream(recvQuick, len(spooled)):
				a.log.Warn("pg_receivewal cannot go on from the spool: sending it, then a new slot and a new base backup", "failures", recvQuick, "err", err)
				a.sendWAL(ctx, false)
				a.startOver(ctx)
				recvQuick = 0
			}
			recvAttempt++
			if !sleep(ctx, backoff(recvAttempt)) {
				return ctx.Err()
			}
		case reply := <-a.baseNow:
			waiting = append(waiting, reply)
		case <-baseDone:
			baseRunning = false
		case <-tick.C:
			recvAttempt = 0
		}
	}
}

// stuckStream says the stream should start over, from a new slot and an
// empty spool: it failed within seconds of starting quick times in a row,
// each time after the database answered, while the spool held log.
// pg_receivewal goes on from where the spool ends, so a spool it cannot
// continue (log of a timeline the server no longer has, or beyond what
// the server has written) fails every retry the same way, and the tenant
// would stay without backups until someone came. Starting over costs a
// new base backup; what the spool held is sent first. (barman's
// `receive-wal --reset` is the same remedy, by hand.) An empty spool is
// never the cause: the stream then starts at the slot.
func stuckStream(quick, spooled int) bool { return quick >= 3 && spooled > 0 }

// heartbeat is the longest the agent leaves its state unwritten: its
// verdict ages (a base backup turns late without any step running), and a
// state older than Check's two minutes says the agent is stuck.
const heartbeat = 30 * time.Second

// heartbeat rewrites the state when nothing else has written it for the
// period every: the loop can wait behind a long step (a prune), and the
// repository's first contact backs off for minutes.
func (a *Agent) heartbeat(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if time.Since(a.snapshotState().Updated) >= every {
				a.update(func(*State) {})
			}
		}
	}
}

// walSegmentSize asks the server for its segment size (16 MiB by default).
func (a *Agent) walSegmentSize(ctx context.Context) uint64 {
	conn, err := a.db.Connect(ctx, "postgres")
	if err != nil {
		return 16 << 20
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, `SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'`).Scan(&s); err != nil {
		return 16 << 20
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 16 << 20
	}
	return n
}

// newCluster starts a new generation when the database is another cluster
// or timeline than the log in the spool: after a restore, or a volume
// recreated empty. What the spool holds is sent first.
func (a *Agent) newCluster(ctx context.Context, c Cluster) {
	s := a.snapshotState()
	if s.System == c.System && s.Timeline == c.Timeline {
		return
	}
	if s.System != "" {
		a.log.Info("the database is a new cluster or timeline: sending the spool, then a new base backup", "system", c.System, "timeline", c.Timeline)
		a.sendWAL(ctx, false)
		a.resetSpool()
	}
	a.update(func(s *State) { s.System, s.Timeline, s.Gen = c.System, c.Timeline, "" })
}

// startOver drops the slot and empties the spool: the next stream starts
// at a new slot, and the next base backup starts a generation.
func (a *Agent) startOver(ctx context.Context) {
	_ = a.db.DropSlot(ctx)
	a.resetSpool()
}

// resetSpool empties the spool; the next base backup starts a generation.
func (a *Agent) resetSpool() {
	_ = os.RemoveAll(a.walDir)
	_ = os.MkdirAll(a.walDir, 0o700)
	a.lastSig = ""
	a.update(func(s *State) { s.Gen, s.PendingSince = "", time.Time{} })
}

// sendWAL sends the spool to the repository when pg_receivewal wrote to
// it since the last time, as a snapshot of the current generation.
func (a *Agent) sendWAL(ctx context.Context, receiving bool) {
	a.work.Lock()
	defer a.work.Unlock()
	a.sendWALLocked(ctx, receiving)
}

func (a *Agent) sendWALLocked(ctx context.Context, receiving bool) {
	now := time.Now().UTC()
	sig, n, err := signature(a.walDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		a.update(func(s *State) { s.fail("wal", err, now) })
		return
	}
	s := a.snapshotState()
	if sig == a.lastSig || n == 0 {
		if receiving && s.Errors["wal"].Message == "" {
			a.update(func(s *State) { s.CaughtUp, s.PendingSince = now, time.Time{} })
		}
		return
	}
	if s.PendingSince.IsZero() {
		a.update(func(s *State) { s.PendingSince = now })
	}
	if s.Gen == "" {
		return // the first base backup starts a generation
	}
	parent := ""
	if s.LastWAL != nil && s.LastWAL.Gen == s.Gen {
		parent = s.LastWAL.Snapshot
	}
	id, _, err := a.repo.BackupDir(ctx, a.walDir, parent, []string{tagKind + "=" + kindWAL, tagGen + "=" + s.Gen})
	a.update(func(st *State) {
		st.fail("repository", err, now)
		if err != nil {
			return
		}
		st.LastWAL = &WALInfo{Snapshot: id, Gen: s.Gen, Time: now, Segments: n}
		st.PendingSince = time.Time{}
		st.CaughtUp = now
	})
	if err != nil {
		a.log.Warn("send write-ahead log", "err", err)
		return
	}
	a.lastSig = sig
}

// base takes a base backup, starts its generation and applies retention,
// holding one of the engine's base backup slots (Slots) throughout. The
// log keeps being sent, to the old generation, while it runs or waits.
func (a *Agent) base(ctx context.Context, reason string) (BaseInfo, error) {
	release, err := a.slot(ctx)
	if err != nil {
		return BaseInfo{}, err
	}
	defer release()
	start := time.Now().UTC()
	gen := start.Format("20060102T150405Z")
	s := a.snapshotState()
	a.log.Info("base backup", "gen", gen, "reason", reason)
	info, first, err := a.takeBase(ctx, gen, reason, s)
	a.update(func(st *State) { st.fail("base", err, time.Now().UTC()) })
	if err != nil {
		a.log.Error("base backup failed", "err", err)
		// Try again in a while, not at once: the repository or database
		// may be down.
		a.update(func(st *State) { st.NextBase = time.Now().UTC().Add(5 * time.Minute) })
		return BaseInfo{}, err
	}
	a.work.Lock()
	// The old generation's log, once more: up to this base's end, so that
	// every moment stays restorable. Then the new generation starts with
	// the log from this base's start.
	if s.Gen != "" {
		a.sendWALLocked(ctx, false)
	}
	a.update(func(st *State) {
		st.Gen, st.LastBase = gen, &info
		st.NextBase = NextBase(st.Tenant, a.interval, info.Start)
	})
	if first != "" {
		if _, err := trimSpool(a.walDir, first); err != nil {
			a.log.Warn("trim spool", "err", err)
		}
	}
	a.lastSig = ""
	a.work.Unlock()
	a.log.Info("base backup done", "gen", gen, "bytes", info.Bytes, "added", info.Added, "took", info.Took.String())
	a.work.Lock()
	a.retention(ctx)
	a.work.Unlock()
	return info, nil
}

// slot waits for one of the engine's base backup slots and returns its
// release; only the end of ctx stops it. A slot that cannot be had for
// another reason (the shared volume is not writable) does not stop the
// backup: the slots guard the host, the backup the tenant's data.
func (a *Agent) slot(ctx context.Context) (func(), error) {
	start := time.Now()
	release, waited, err := a.slots.Acquire(ctx)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		a.log.Warn("base backup without a slot", "err", err)
		return func() {}, nil
	case waited:
		a.log.Info("base backup slot free", "waited", time.Since(start).Round(time.Second).String())
	}
	return release, nil
}

// takeBase streams pg_basebackup into a snapshot and returns it with the
// first segment its recovery needs.
func (a *Agent) takeBase(ctx context.Context, gen, reason string, s State) (BaseInfo, string, error) {
	start := time.Now().UTC()
	bb, err := a.db.StartBaseBackup(ctx)
	if err != nil {
		return BaseInfo{}, "", err
	}
	counter := &countingReader{r: bb.Out}
	tags := []string{tagKind + "=" + kindBase, tagGen + "=" + gen, tagStart + "=" + start.Format(time.RFC3339Nano),
		tagReason + "=" + strings.ReplaceAll(reason, " ", "-"), tagSystem + "=" + s.System, tagTimline + "=" + strconv.Itoa(s.Timeline)}
	id, added, berr := a.repo.BackupStream(ctx, counter, "base.tar", tags)
	if berr != nil {
		_, _ = io.Copy(io.Discard, bb.Out)
	}
	startLSN, timeline, werr := bb.Wait()
	if err := errors.Join(berr, werr); err != nil {
		if id != "" {
			_ = a.repo.Forget(ctx, id)
		}
		return BaseInfo{}, "", err
	}
	end := time.Now().UTC()
	// Mark it complete: only a base with an end tag is restored from.
	a.work.Lock()
	err = a.repo.exclusive(ctx, "tag", "--add", tagEnd+"="+end.Format(time.RFC3339Nano), id)
	a.work.Unlock()
	if err != nil {
		return BaseInfo{}, "", err
	}
	tl, _ := strconv.Atoi(timeline)
	first, err := SegmentName(startLSN, tl, a.segSize)
	if err != nil {
		first = ""
	}
	snaps, err := a.repo.Snapshots(ctx, tagKind+"="+kindBase, tagGen+"="+gen)
	if err == nil && len(snaps) > 0 {
		id = snaps[len(snaps)-1].ID
	}
	return BaseInfo{Snapshot: id, Gen: gen, Start: start, End: end, Bytes: counter.n, Added: added, Took: end.Sub(start), Reason: reason}, first, nil
}

// retention forgets what the policy does not keep, and the log no kept base
// needs, then prunes at most once in 20 hours (pruning rewrites packs). The
// policy keeps every base of the last KeepDays days, so that every moment
// of them stays restorable, and the newest base of each of the KeepWeeks
// weeks before (restorable to any moment of the day after it). The caller
// holds a.work: pruning locks the repository.
func (a *Agent) retention(ctx context.Context) {
	now := time.Now().UTC()
	a.lastRetention = now
	err := a.repo.ForgetPolicy(ctx, tagKind+"="+kindBase, "--keep-within", strconv.Itoa(a.cfg.KeepDays)+"d", "--keep-weekly", strconv.Itoa(a.cfg.KeepWeeks))
	if err == nil {
		var snaps []Snapshot
		if snaps, err = a.repo.Snapshots(ctx); err == nil {
			err = a.repo.Forget(ctx, Retained(snaps)...)
		}
	}
	if err == nil && now.Sub(a.lastPrune) > 20*time.Hour {
		if err = a.repo.Prune(ctx); err == nil {
			a.lastPrune = now
		}
	}
	a.update(func(s *State) { s.fail("retention", err, now) })
	if err != nil {
		a.log.Warn("retention", "err", err)
	}
}

// syncFromRepo fills the state's last backups from the repository, for an
// agent whose spool is new (a replaced container keeps its spool volume).
func (a *Agent) syncFromRepo(ctx context.Context) {
	snaps, err := a.repo.Snapshots(ctx)
	if err != nil {
		a.log.Warn("list snapshots", "err", err)
		return
	}
	gens := Generations(snaps)
	if len(gens) == 0 {
		return
	}
	g := gens[len(gens)-1]
	a.update(func(s *State) {
		if s.LastBase == nil {
			s.LastBase = &BaseInfo{Snapshot: g.Base.ID, Gen: g.ID, Start: g.Base.TagTime(tagStart), End: g.End, Reason: g.Base.Tag(tagReason)}
			s.NextBase = NextBase(s.Tenant, a.interval, s.LastBase.Start)
		}
		if s.LastWAL == nil && g.WAL != nil {
			s.LastWAL = &WALInfo{Snapshot: g.WAL.ID, Gen: g.ID, Time: g.WAL.Time}
		}
	})
}

// BaseNow asks the running agent for a base backup and waits for it.
func (a *Agent) BaseNow(ctx context.Context) (BaseInfo, error) {
	reply := make(chan baseResult, 1)
	select {
	case a.baseNow <- reply:
	case <-ctx.Done():
		return BaseInfo{}, ctx.Err()
	}
	select {
	case r := <-reply:
		return r.info, r.err
	case <-ctx.Done():
		return BaseInfo{}, ctx.Err()
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// logWriter turns pg_receivewal's lines into log records.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info(strings.TrimSpace(string(p)), "tool", "pg_receivewal")
	return len(p), nil
}

// backoff is how long to wait before attempt n again: 2 s doubling to 5 min.
func backoff(n int) time.Duration {
	d := 2 * time.Second
	for i := 0; i < n && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
