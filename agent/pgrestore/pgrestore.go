// Package pgrestore puts a PostgreSQL data directory back from a tenant's
// backups: it asks the tenant's backup agent for a plan (which base backup,
// which write-ahead log, where to stop), unpacks both, and configures
// PostgreSQL's own point-in-time recovery. The database's entrypoint
// (cmd/pgstart) runs it before the server starts; drills run it into a
// scratch directory.
//
// It uses the standard library only, so the database image changes only
// when this package or pgstart does.
package pgrestore

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Plan is what the agent restores for a target: a base backup and the
// write-ahead log after it, and where recovery stops.
type Plan struct {
	// ID names the plan on the agent, for fetching its parts.
	ID string `json:"id"`
	// Base and WAL are the restic snapshots restored.
	Base string `json:"base"`
	WAL  string `json:"wal,omitempty"`
	// BaseEnd is when the base backup became consistent: the earliest
	// moment it can be restored to.
	BaseEnd time.Time `json:"baseEnd"`
	// TargetLSN, if set, is the first commit after the target time:
	// recovery stops just before it. Empty means replay everything.
	TargetLSN string `json:"targetLsn,omitempty"`
	// LastCommit is the time of the last commit the restored data holds.
	LastCommit time.Time `json:"lastCommit"`
}

// Agent is a client of a backup agent's restore endpoints.
type Agent struct {
	// URL is the agent's base URL, e.g. http://backup:7070.
	URL string
	// Token authorises the restore.
	Token  string
	Client *http.Client
}

func (a Agent) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(a.URL, "/")+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	c := a.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("backup agent %s%s: %s: %s", a.URL, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

// Plan asks the agent how it would restore to "latest" or an RFC 3339 time.
func (a Agent) Plan(ctx context.Context, to string) (Plan, error) {
	resp, err := a.get(ctx, "/restore/plan", url.Values{"to": {to}})
	if err != nil {
		return Plan{}, err
	}
	defer resp.Body.Close()
	var p Plan
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return Plan{}, fmt.Errorf("backup agent's plan: %w", err)
	}
	return p, nil
}

// Fetch unpacks the plan's base backup into dataDir and its write-ahead log
// into walDir, both created empty.
func (a Agent) Fetch(ctx context.Context, p Plan, dataDir, walDir string) error {
	for _, part := range []struct{ path, dir string }{{"/restore/base", dataDir}, {"/restore/wal", walDir}} {
		if err := os.MkdirAll(part.dir, 0o700); err != nil {
			return err
		}
		resp, err := a.get(ctx, part.path, url.Values{"plan": {p.ID}})
		if err != nil {
			return err
		}
		err = Untar(resp.Body, part.dir)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("unpack %s: %w", part.path, err)
		}
	}
	return CompletePartial(walDir)
}

// Untar unpacks a tar stream into dir, refusing paths that leave it.
func Untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(strings.TrimPrefix(h.Name, "/"))
		if name == "." {
			continue
		}
		if name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("tar entry %q leaves the target directory", h.Name)
		}
		target := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o700|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			// pg_wal or tablespaces as links; a base backup to a tar has none.
			return fmt.Errorf("tar entry %q is a symbolic link", h.Name)
		}
	}
}

// segment is a WAL segment file name, possibly with pg_receivewal's
// .partial suffix for the one it was still writing.
var segment = regexp.MustCompile(`^[0-9A-F]{24}(\.partial)?$`)

// CompletePartial renames the one segment pg_receivewal was still writing
// (X.partial) to its name X, as recovery asks for segments by name: its
// valid records are replayed, the zeroes after them end the log. A complete
// segment of the same name wins.
func CompletePartial(walDir string) error {
	entries, err := os.ReadDir(walDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !segment.MatchString(name) || !strings.HasSuffix(name, ".partial") {
			continue
		}
		full := filepath.Join(walDir, strings.TrimSuffix(name, ".partial"))
		if _, err := os.Stat(full); err == nil {
			if err := os.Remove(filepath.Join(walDir, name)); err != nil {
				return err
			}
			continue
		}
		if err := os.Rename(filepath.Join(walDir, name), full); err != nil {
			return err
		}
	}
	return nil
}

// lsn is a WAL location as PostgreSQL writes it.
var lsn = regexp.MustCompile(`^[0-9A-F]{1,8}/[0-9A-F]{1,8}$`)

// recoverySettings are the lines Configure owns in postgresql.auto.conf.
var recoverySettings = regexp.MustCompile(`^\s*(restore_command|recovery_target\w*)\s*=`)

// Configure sets dataDir up for PostgreSQL's archive recovery from walDir:
// recovery.signal, a restore_command that copies from walDir, and where to
// stop (the plan's target LSN, exclusive, or the end of the log), then
// promote. Settings of an earlier restore, which a base backup carries in
// postgresql.auto.conf, are replaced.
func Configure(dataDir, walDir string, p Plan) error {
	if p.TargetLSN != "" && !lsn.MatchString(p.TargetLSN) {
		return fmt.Errorf("target %q is not an LSN", p.TargetLSN)
	}
	if strings.ContainsAny(walDir, "'\\%") {
		return fmt.Errorf("WAL directory %q cannot be quoted in restore_command", walDir)
	}
	auto := filepath.Join(dataDir, "postgresql.auto.conf")
	old, err := os.ReadFile(auto)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var lines []string
	for l := range strings.SplitSeq(string(old), "\n") {
		if l != "" && !recoverySettings.MatchString(l) && !strings.HasPrefix(l, "# polls restore") {
			lines = append(lines, l)
		}
	}
	lines = append(lines,
		"# polls restore "+p.ID,
		fmt.Sprintf("restore_command = 'cp %s/%%f %%p'", walDir),
		"recovery_target_action = 'promote'",
		"recovery_target_timeline = 'latest'",
	)
	if p.TargetLSN != "" {
		lines = append(lines, fmt.Sprintf("recovery_target_lsn = '%s'", p.TargetLSN), "recovery_target_inclusive = off")
	}
	if err := os.WriteFile(auto, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	// A base backup's backup_label starts recovery where the backup began.
	return os.WriteFile(filepath.Join(dataDir, "recovery.signal"), nil, 0o600)
}
