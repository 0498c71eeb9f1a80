package backup

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/polls-tenants/polls/agent/pgrestore"
)

// plans are the restores the agent prepared: each a WAL directory restored
// from the repository, kept an hour for its database to fetch.
type plans struct {
	dir string
	mu  sync.Mutex
	m   map[string]planEntry
}

type planEntry struct {
	plan    pgrestore.Plan
	walDir  string
	created time.Time
}

func newPlans(dir string) *plans { return &plans{dir: dir, m: map[string]planEntry{}} }

func (p *plans) put(e planEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, old := range p.m {
		if time.Since(old.created) > time.Hour {
			_ = os.RemoveAll(filepath.Dir(old.walDir))
			delete(p.m, id)
		}
	}
	p.m[e.plan.ID] = e
}

func (p *plans) get(id string) (planEntry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[id]
	return e, ok
}

// handler serves the agent's endpoints:
//
//	GET  /restore/plan?to=latest|<RFC 3339>   plan a restore (token)
//	GET  /restore/base?plan=ID                its base backup, a tar (token)
//	GET  /restore/wal?plan=ID                 its write-ahead log, a tar (token)
//	GET  /backups                             generations and coverage (loopback)
//	POST /backup                              a base backup now (loopback)
//	GET  /metrics                             the database and backups, for Prometheus
//
// The restore endpoints take the tenant's restore token, which only its
// database holds, or the token of a tenant declared as restored from this
// one. A tenant restored from another forwards them to that tenant's agent.
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	restore := func(h http.HandlerFunc) http.Handler {
		if a.cfg.Source != "" {
			return a.forward()
		}
		return a.authorised(h)
	}
	mux.Handle("GET /restore/plan", restore(a.servePlan))
	mux.Handle("GET /restore/base", restore(a.serveBase))
	mux.Handle("GET /restore/wal", restore(a.serveWAL))
	mux.Handle("GET /backups", loopback(http.HandlerFunc(a.serveBackups)))
	mux.Handle("POST /backup", loopback(http.HandlerFunc(a.serveBaseNow)))
	mux.Handle("GET /metrics", a.metricsHandler())
	return mux
}

// authorised lets through requests with the restore token or a copy token.
func (a *Agent) authorised(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if got == "" || !a.tokenAccepted(got) {
			http.Error(w, "restores need this tenant's restore token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (a *Agent) tokenAccepted(got string) bool {
	var accepted []string
	if t, err := readSecret(a.cfg.RestoreTokenFile); err == nil && t != "" {
		accepted = append(accepted, t)
	}
	if a.cfg.CopyTokensFile != "" {
		if b, err := os.ReadFile(a.cfg.CopyTokensFile); err == nil {
			for l := range strings.SplitSeq(string(b), "\n") {
				if l = strings.TrimSpace(l); l != "" {
					accepted = append(accepted, l)
				}
			}
		}
	}
	ok := false
	for _, t := range accepted {
		if subtle.ConstantTimeCompare([]byte(got), []byte(t)) == 1 {
			ok = true
		}
	}
	return ok
}

// forward sends a restore of a tenant restored from another tenant's
// backups to that tenant's agent, with the token it accepts from this one.
func (a *Agent) forward() http.Handler {
	target, _ := url.Parse("http://" + a.cfg.Source)
	proxy := httputil.NewSingleHostReverseProxy(target)
	return a.authorised(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, err := readSecret(a.cfg.SourceTokenFile)
		if err != nil {
			http.Error(w, "no token for the source tenant's agent: "+err.Error(), http.StatusInternalServerError)
			return
		}
		r.Header.Set("Authorization", "Bearer "+token)
		proxy.ServeHTTP(w, r)
	}))
}

// loopback lets through requests from inside the agent's container only:
// the status and backup subcommands, run with docker exec.
func loopback(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			http.Error(w, "only from inside the agent's container", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Backups is what GET /backups answers: the generations the repository
// holds, and when all log had last been sent.
type Backups struct {
	Generations []GenerationInfo `json:"generations"`
	CaughtUp    time.Time        `json:"caughtUp,omitzero"`
}

// GenerationInfo is a generation as restores see it: it restores to any
// moment from From to To.
type GenerationInfo struct {
	ID   string    `json:"id"`
	Base string    `json:"base"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

func (a *Agent) serveBackups(w http.ResponseWriter, r *http.Request) {
	snaps, err := a.repo.Snapshots(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out := Backups{Generations: []GenerationInfo{}, CaughtUp: a.snapshotState().CaughtUp}
	for _, g := range Generations(snaps) {
		out.Generations = append(out.Generations, GenerationInfo{ID: g.ID, Base: g.Base.ID, From: g.End, To: g.Covers()})
	}
	writeJSON(w, out)
}

func (a *Agent) serveBaseNow(w http.ResponseWriter, r *http.Request) {
	info, err := a.BaseNow(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	writeJSON(w, info)
}

// servePlan sends what the spool holds, picks the generation for the
// target, restores its log here and finds where recovery stops.
func (a *Agent) servePlan(w http.ResponseWriter, r *http.Request) {
	p, err := a.Plan(r.Context(), r.URL.Query().Get("to"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	writeJSON(w, p)
}

// Plan prepares a restore to "latest" or an RFC 3339 time.
func (a *Agent) Plan(ctx context.Context, to string) (pgrestore.Plan, error) {
	var target time.Time
	if to != "latest" {
		t, err := time.Parse(time.RFC3339Nano, to)
		if err != nil {
			return pgrestore.Plan{}, fmt.Errorf("to=%q: use latest or an RFC 3339 time", to)
		}
		target = t.UTC()
	}
	// What the spool holds goes first, so "latest" is as late as it gets.
	a.sendWAL(ctx, false)
	snaps, err := a.repo.Snapshots(ctx)
	if err != nil {
		return pgrestore.Plan{}, err
	}
	g, err := Choose(Generations(snaps), target, a.snapshotState().CaughtUp)
	if err != nil {
		return pgrestore.Plan{}, err
	}
	id := newID()
	dir := filepath.Join(a.plans.dir, id)
	walDir := filepath.Join(dir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return pgrestore.Plan{}, err
	}
	p := pgrestore.Plan{ID: id, Base: g.Base.ID, BaseEnd: g.End}
	if g.WAL != nil {
		p.WAL = g.WAL.ID
		if err := a.restoreWAL(ctx, g.WAL.ID, walDir); err != nil {
			return pgrestore.Plan{}, err
		}
		commits, err := Commits(ctx, walDir)
		if err != nil {
			return pgrestore.Plan{}, fmt.Errorf("read the archived log: %w", err)
		}
		if target.IsZero() {
			if len(commits) > 0 {
				p.LastCommit = commits[len(commits)-1].Time
			}
		} else {
			p.TargetLSN, p.LastCommit = StopBefore(commits, target)
		}
	}
	a.plans.put(planEntry{plan: p, walDir: walDir, created: time.Now()})
	return p, nil
}

// restoreWAL restores WAL snapshot id's segments into dir, the partial one
// completed.
func (a *Agent) restoreWAL(ctx context.Context, id, dir string) error {
	tmp := dir + ".restic"
	if err := a.repo.run(ctx, nil, io.Discard, "restore", id, "--target", tmp); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// The snapshot holds the spool's path; its files go flat into dir.
	err := filepath.WalkDir(tmp, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Rename(path, filepath.Join(dir, d.Name()))
	})
	if err != nil {
		return err
	}
	return pgrestore.CompletePartial(dir)
}

func (a *Agent) serveBase(w http.ResponseWriter, r *http.Request) {
	e, ok := a.plans.get(r.URL.Query().Get("plan"))
	if !ok {
		http.Error(w, "no such plan (plans last an hour)", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	// pg_basebackup's tar is the data directory: sent as restic stores it.
	if err := a.repo.Dump(r.Context(), e.plan.Base, "/base.tar", w); err != nil {
		a.log.Error("send base backup", "plan", e.plan.ID, "err", err)
		panic(http.ErrAbortHandler)
	}
}

func (a *Agent) serveWAL(w http.ResponseWriter, r *http.Request) {
	e, ok := a.plans.get(r.URL.Query().Get("plan"))
	if !ok {
		http.Error(w, "no such plan (plans last an hour)", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	if err := tarDir(w, e.walDir); err != nil {
		a.log.Error("send write-ahead log", "plan", e.plan.ID, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// tarDir writes dir's regular files as a flat tar archive.
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.Name(), Mode: 0o600, Size: info.Size(), ModTime: info.ModTime(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
