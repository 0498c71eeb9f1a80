// Command polls-pgstart is the entrypoint of the tenants' PostgreSQL
// containers. Before the server starts it:
//
//   - restores the data directory from the tenant's backups when the
//     program asks for a restore (a request file) that this volume has not
//     applied yet: the data directory there is moved aside (it is the undo),
//     the tenant's backup agent is asked for the base backup and the
//     write-ahead log up to the target, and PostgreSQL's own point-in-time
//     recovery is set up to stop there and promote;
//   - lets the tenant's backup agent stream the write-ahead log
//     (a replication entry in pg_hba.conf);
//
// then it runs the image's own docker-entrypoint.sh with its arguments.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/polls-tenants/polls/agent/pgrestore"
)

// The request the program delivers with a restore, and where a volume
// records what it applied.
const (
	requestFile = "/run/secrets/polls-restore.json"
	doneFile    = ".polls-restored"
)

// request asks for a restore: id names it (a new id is a new restore), to
// is "latest" or an RFC 3339 time, agent the backup agent's URL.
type request struct {
	ID        string `json:"id"`
	To        string `json:"to"`
	Agent     string `json:"agent"`
	TokenFile string `json:"tokenFile"`
}

// replicationLine lets the backup agent stream the log with the tenant's
// role and password; "all" in pg_hba.conf's database column does not cover
// replication connections.
const replicationLine = "host replication all all scram-sha-256"

func main() {
	log.SetFlags(0)
	log.SetPrefix("polls-pgstart: ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if err := prepare(ctx); err != nil {
		log.Fatal(err)
	}
	stop()
	args := append([]string{"docker-entrypoint.sh"}, os.Args[1:]...)
	err := syscall.Exec("/usr/local/bin/docker-entrypoint.sh", args, os.Environ())
	log.Fatalf("exec docker-entrypoint.sh: %v", err)
}

func prepare(ctx context.Context) error {
	pgdata := os.Getenv("PGDATA")
	if pgdata == "" {
		return errors.New("PGDATA is not set")
	}
	if err := restore(ctx, pgdata); err != nil {
		return err
	}
	return allowReplication(pgdata)
}

// restore applies the request, if any and not applied in this volume.
func restore(ctx context.Context, pgdata string) error {
	b, err := os.ReadFile(requestFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var req request
	if err := json.Unmarshal(b, &req); err != nil {
		return fmt.Errorf("restore request %s: %w", requestFile, err)
	}
	if req.ID == "" {
		return nil
	}
	mount := filepath.Dir(pgdata)
	if done, _ := os.ReadFile(filepath.Join(mount, doneFile)); strings.TrimSpace(string(done)) == req.ID {
		return nil
	}
	token, err := os.ReadFile(req.TokenFile)
	if err != nil {
		return fmt.Errorf("restore token: %w", err)
	}
	agent := pgrestore.Agent{URL: req.Agent, Token: strings.TrimSpace(string(token))}
	log.Printf("restore %s: asking the backup agent at %s for %s", req.ID, req.Agent, req.To)
	var plan pgrestore.Plan
	// The agent may be starting too (a new tenant, a restarted host).
	for attempt := 0; ; attempt++ {
		plan, err = agent.Plan(ctx, req.To)
		if err == nil {
			break
		}
		if attempt >= 60 || ctx.Err() != nil {
			return fmt.Errorf("restore %s to %s: %w", req.ID, req.To, err)
		}
		log.Printf("restore %s: %v; retrying in 5s", req.ID, err)
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
	start := time.Now()
	next := filepath.Join(mount, "pgdata.restoring")
	walDir := filepath.Join(mount, "restore-wal", req.ID)
	if err := os.RemoveAll(next); err != nil {
		return err
	}
	if err := os.RemoveAll(walDir); err != nil {
		return err
	}
	if err := agent.Fetch(ctx, plan, next, walDir); err != nil {
		return fmt.Errorf("restore %s: %w", req.ID, err)
	}
	if err := pgrestore.Configure(next, walDir, plan); err != nil {
		return fmt.Errorf("restore %s: configure recovery: %w", req.ID, err)
	}
	// The data directory as it was stays beside, so a restore to the wrong
	// moment can be undone; README says how.
	if entries, err := os.ReadDir(pgdata); err == nil && len(entries) > 0 {
		aside := filepath.Join(mount, "pgdata.before-"+req.ID)
		_ = os.RemoveAll(aside)
		if err := os.Rename(pgdata, aside); err != nil {
			return err
		}
		log.Printf("restore %s: the data directory as it was is kept in %s", req.ID, aside)
	} else if err := os.RemoveAll(pgdata); err != nil {
		return err
	}
	if err := os.Rename(next, pgdata); err != nil {
		return err
	}
	if err := chownPostgres(mount, pgdata, filepath.Join(mount, "restore-wal")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mount, doneFile), []byte(req.ID+"\n"), 0o644); err != nil {
		return err
	}
	log.Printf("restore %s: base %s and log %s unpacked in %s; PostgreSQL recovers up to %s and promotes",
		req.ID, plan.Base, plan.WAL, time.Since(start).Round(time.Millisecond), target(plan))
	return nil
}

func target(p pgrestore.Plan) string {
	if p.TargetLSN == "" {
		return "the end of the archived log (last commit " + p.LastCommit.Format(time.RFC3339) + ")"
	}
	return "LSN " + p.TargetLSN + " (last commit " + p.LastCommit.Format(time.RFC3339) + ")"
}

// allowReplication adds the replication entry to an initialised data
// directory's pg_hba.conf; a new one gets it from the image's initdb script.
func allowReplication(pgdata string) error {
	hba := filepath.Join(pgdata, "pg_hba.conf")
	b, err := os.ReadFile(hba)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.Join(strings.Fields(l), " ") == replicationLine {
			return nil
		}
	}
	f, err := os.OpenFile(hba, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\n# the tenant's backup agent streams the write-ahead log\n%s\n", replicationLine)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// chownPostgres gives the paths, recursively, to the owner of the volume's
// mount point: the image's postgres user.
func chownPostgres(mount string, paths ...string) error {
	fi, err := os.Stat(mount)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid, gid := int(st.Uid), int(st.Gid)
	if uid == 0 {
		// A fresh volume's mount point is root's: use the image's user.
		if u, g, ok := postgresUser(); ok {
			uid, gid = u, g
		}
	}
	for _, p := range paths {
		err := filepath.Walk(p, func(path string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// postgresUser looks the postgres user up in /etc/passwd.
func postgresUser() (int, int, bool) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return 0, 0, false
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 3 && f[0] == "postgres" {
			u, err1 := strconv.Atoi(f[2])
			g, err2 := strconv.Atoi(f[3])
			return u, g, err1 == nil && err2 == nil
		}
	}
	return 0, 0, false
}
