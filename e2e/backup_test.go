package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/dockerapi"
)

// backupState is the part of a backup agent's state the tests read
// (agent/backup.State).
type backupState struct {
	LastBase *struct {
		End time.Time `json:"end"`
	} `json:"lastBase"`
	LastWAL *struct {
		Time time.Time `json:"time"`
	} `json:"lastWal"`
	CaughtUp time.Time                  `json:"caughtUp"`
	Errors   map[string]json.RawMessage `json:"errors"`
}

// agent is the name of the tenant's backup agent.
func (e *env) agent(tenant string) string { return e.prefix + "-" + tenant + "-backup" }

// backupStatus reads the tenant's agent's state.
func (e *env) backupStatus(tenant string) (backupState, error) {
	var s backupState
	out, err := exec.Command("docker", "exec", e.agent(tenant), "polls-agent", "backup", "status", "--json").CombinedOutput()
	if err != nil {
		return s, fmt.Errorf("%v: %s", err, out)
	}
	return s, json.Unmarshal(out, &s)
}

// archived waits until the tenant's agent has a base backup and has sent
// every log it received after since, and returns its state.
func (e *env) archived(tenant string, since time.Time, within time.Duration) backupState {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s, err := e.backupStatus(tenant)
		if err == nil && s.LastBase != nil && s.CaughtUp.After(since) {
			return s
		}
		if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", "--tail", "40", e.agent(tenant)).CombinedOutput()
			e.t.Fatalf("%s's backups did not catch up with %s within %s: %+v, %v\nthe agent's last log lines:\n%s", tenant, since.Format(time.RFC3339Nano), within, s, err, logs)
		}
		time.Sleep(time.Second)
	}
}

// breakSpool puts in the tenant's agent's spool a segment beyond what its
// database has written and stops pg_receivewal, which then goes on from
// that segment: what a spool left from a timeline the database no longer
// has looks like to it. It returns when.
func (e *env) breakSpool(tenant string) time.Time {
	e.t.Helper()
	e.docker("exec", "-u", "postgres", e.agent(tenant), "sh", "-c", `set -e
last=$(ls /spool/wal | grep -E '^[0-9A-F]{24}' | tail -n 1)
head -c 16777216 /dev/zero > "/spool/wal/$(echo "$last" | cut -c1-8)00000000000000F0"
for p in /proc/[0-9]*; do
  case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
  "pg_receivewal -D "*) kill -INT "${p#/proc/}" ;;
  esac
done`)
	return time.Now()
}

// psql runs SQL in the tenant's database and returns its unaligned output.
func (e *env) psql(tenant, sql string) string {
	e.t.Helper()
	return e.inDB(tenant, "psql", "-U", "polls", "-d", "polls", "-qAtc", sql)
}

// inDB runs a command in the tenant's database container: on one host by
// its name, on Swarm in its task's container on whichever node runs it.
func (e *env) inDB(tenant string, cmd ...string) string {
	e.t.Helper()
	if e.dbContainer == nil {
		return e.docker(append([]string{"exec", e.prefix + "-" + tenant + "-db"}, cmd...)...)
	}
	host, id := e.dbContainer(tenant)
	args := append([]string{"exec", id}, cmd...)
	if host != "" {
		args = append([]string{"-H", host}, args...)
	}
	return e.docker(args...)
}

// removeVolume deletes a data volume, on whichever engine holds it. On
// Swarm the removed service's task containers go a moment after it, and
// hold the volume until then: it is tried again for up to a minute.
func (e *env) removeVolume(name string) {
	e.t.Helper()
	hosts := append([]string{""}, e.otherHosts...)
	deadline := time.Now().Add(time.Minute)
	for {
		var errs []string
		for _, h := range hosts {
			args := []string{"volume", "rm", name}
			if h != "" {
				args = append([]string{"-H", h}, args...)
			}
			out, err := exec.Command("docker", args...).CombinedOutput()
			if err == nil {
				return
			}
			errs = append(errs, strings.TrimSpace(string(out)))
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("volume %s could not be removed from any engine: %s", name, strings.Join(errs, "; "))
		}
		time.Sleep(2 * time.Second)
	}
}

// agentProblems returns what tenant's agent last wrote as wrong with its
// backups, read from its state file as `pulumi preview` reads it
// (dockerapi.ReadFile, the engine's archive API).
func (e *env) agentProblems(tenant string) ([]string, error) {
	engine, err := dockerapi.New("")
	if err != nil {
		return nil, err
	}
	defer engine.Close()
	b, err := engine.ReadFile(e.ctx, e.agent(tenant), contract.AgentStateFile)
	if err != nil {
		return nil, err
	}
	var st contract.AgentStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return st.Verdict(time.Now()), nil
}

// waitProblems waits until tenant's agent reports a problem that says
// want (or no problem at all, if want is "") and returns its problems.
func (e *env) waitProblems(tenant, want string, within time.Duration) []string {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		p, err := e.agentProblems(tenant)
		if err == nil && (want == "" && len(p) == 0 || want != "" && strings.Contains(strings.Join(p, "\n"), want)) {
			return p
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s's agent reports %q (%v) after %s; want a problem saying %q (none if empty)", tenant, p, err, within, want)
		}
		time.Sleep(2 * time.Second)
	}
}

// previewWarnings runs `pulumi preview` and returns its warnings.
func (e *env) previewWarnings() []string {
	e.t.Helper()
	evs := make(chan events.EngineEvent)
	var warnings []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range evs {
			if d := ev.DiagnosticEvent; d != nil && d.Severity == "warning" {
				warnings = append(warnings, strings.TrimSpace(d.Message))
			}
		}
	}()
	_, err := e.stack.Preview(e.ctx, optpreview.ProgressStreams(e.log), optpreview.EventStreams(evs))
	<-done
	if err != nil {
		e.t.Fatalf("pulumi preview: %v", tailErr(err))
	}
	return warnings
}

// useBackupRepository keeps the stack's backups in a directory of the test.
func (e *env) useBackupRepository() string {
	dir := filepath.Join(e.t.TempDir(), "backups")
	e.config["polls:backupRepository"] = dir
	return dir
}

// checkBackups runs the backup steps of a stack whose tenants alpha, beta
// and gamma serve: backups run and are encrypted and isolated per tenant,
// a restore to a moment brings back exactly its rows while the others serve
// with no failed request, a broken repository is reported and recovers,
// a tenant whose volume was deleted comes back from the repository, and a
// drill proves a tenant's backups. repoFiles lists where the repository's
// files are, to search them for plaintext. tenantsJSON renders polls:tenants
// from per-tenant settings.
func (e *env) checkBackups(repoFiles string, breakRepo, fixRepo func(), tenantsJSON func(settings map[string]string) string) {
	t := e.t
	t.Helper()
	marker := "marker-" + randomHex(6)
	// settings are each tenant's, kept from step to step: a restore
	// setting stays while its tenant is restored from it.
	settings := map[string]string{}
	set := func(tenant, s string) string {
		settings[tenant] = s
		return tenantsJSON(settings)
	}

	// Backups run: a base backup, and every change archived within seconds.
	e.psql("alpha", "CREATE TABLE drill (n int, note text)")
	e.psql("alpha", "INSERT INTO drill SELECT g, '"+marker+"' FROM generate_series(1, 100) g")
	time.Sleep(1500 * time.Millisecond)
	target := time.Now().UTC()
	time.Sleep(1500 * time.Millisecond)
	e.psql("alpha", "INSERT INTO drill SELECT g, 'later' FROM generate_series(101, 150) g")
	e.psql("alpha", "DROP TABLE drill")
	dropped := time.Now()
	s := e.archived("alpha", dropped, 90*time.Second)
	t.Logf("alpha's log archived %s after the table was dropped", s.CaughtUp.Sub(dropped).Round(100*time.Millisecond))

	// Bounded: alpha took its base backup holding one of the engine's base
	// backup slots, in the volume every agent shares (beta's agent sees the
	// lock file alpha's created), and no agent went on without one.
	for _, tenant := range []string{"alpha", "beta"} {
		out, err := exec.Command("docker", "exec", e.agent(tenant), "ls", contract.SlotsMount).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "base-0.lock") {
			t.Errorf("%s's agent sees in %s: %v, %q; want the slot alpha's base backup held (base-0.lock)", tenant, contract.SlotsMount, err, out)
		}
		if logs, _ := exec.Command("docker", "logs", e.agent(tenant)).CombinedOutput(); strings.Contains(string(logs), "without a slot") {
			t.Errorf("%s's agent took a base backup without a slot:\n%s", tenant, tail(string(logs), 3000))
		}
	}

	// Encrypted: the marker is in no file of the repository.
	if out, err := exec.Command("grep", "-rl", marker, repoFiles).CombinedOutput(); err == nil {
		t.Errorf("the repository holds the marker row in plain text: %s", out)
	} else if files, _ := exec.Command("find", repoFiles, "-type", "f").Output(); strings.Count(string(files), "\n") < 10 {
		t.Errorf("the repository at %s holds almost nothing: %s", repoFiles, files)
	}
	// Isolated: alpha's agent, with alpha's login, cannot open beta's
	// repository; no container shows a backup secret in its environment.
	out, err := exec.Command("docker", "exec", e.agent("alpha"), "sh", "-c",
		`sed 's#/alpha/$#/beta/#' /run/secrets/backup-repository > /tmp/beta && restic --repository-file /tmp/beta --password-file /run/secrets/backup-key snapshots`).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "403") {
		t.Errorf("alpha's agent reading beta's repository: %v, %s; want 403 Forbidden", err, out)
	}
	for _, c := range []string{e.agent("alpha"), e.prefix + "-backup-gateway"} {
		if env := e.docker("inspect", "-f", "{{json .Config.Env}} {{json .Args}}", c); strings.Contains(strings.ToUpper(env), "PASSWORD=") || strings.Contains(env, "rest:http") {
			t.Errorf("%s shows a secret in its environment or arguments: %s", c, env)
		}
	}

	// Restore alpha to the moment before the late rows and the drop, while
	// beta and gamma serve.
	stop := e.hammer([]string{"beta", "gamma"})
	start := time.Now()
	e.setTenants(set("alpha", `{"restore":"`+target.Format(time.RFC3339Nano)+`"}`))
	e.up()
	sent, failures := stop()
	t.Logf("alpha restored to %s in %s: %d requests to beta and gamma, %d failed", target.Format(time.RFC3339Nano), time.Since(start).Round(time.Second), sent, len(failures))
	if sent == 0 || len(failures) > 0 {
		t.Errorf("while restoring alpha: %d requests, %d failed: %v", sent, len(failures), failures)
	}
	if got := e.psql("alpha", "SELECT count(*) || ' ' || min(n) || '-' || max(n) || ' ' || count(*) FILTER (WHERE note = '"+marker+"') FROM drill"); got != "100 1-100 100" {
		t.Errorf("alpha after the restore holds %q (rows, range, marked); want exactly the 100 rows of the moment", got)
	}
	if code, _ := e.get("alpha.polls.local", "/"); code != http.StatusOK {
		t.Errorf("alpha after its restore answers %d; want 200", code)
	}
	if ls := e.inDB("alpha", "ls", "/var/lib/postgresql/data"); !strings.Contains(ls, "pgdata.before-") {
		t.Errorf("alpha's data directory as it was before the restore is not kept: %s", ls)
	}
	e.noChanges()

	// A tenant whose volume was deleted comes back from the repository,
	// and, in the same `pulumi up`, a copy of alpha at the moment above,
	// for an investigation: a new tenant restored from alpha's backups,
	// alpha untouched. (One up for both: each up costs the e2e run most
	// of a minute.)
	question := "Back from the repository " + randomHex(3) + "?"
	e.psql("gamma", "INSERT INTO polls (question) VALUES ('"+question+"')")
	e.archived("gamma", time.Now(), 90*time.Second)
	e.setTenants(set("gamma", "-"))
	e.up()
	e.removeVolume(e.prefix + "-gamma-pgdata")
	alphaDB := e.inDB("alpha", "sh", "-c", "hostname")
	set("copy", `{"restoreFrom":"alpha","restore":"`+target.Format(time.RFC3339Nano)+`"}`)
	e.setTenants(set("gamma", `{"restore":"latest"}`))
	e.up()
	if got := e.psql("gamma", "SELECT count(*) FROM polls WHERE question = '"+question+"'"); got != "1" {
		t.Errorf("gamma after its volume was deleted and restored from the repository has %s of its poll; want 1", got)
	}
	if got := e.psql("copy", "SELECT count(*) || ' ' || count(*) FILTER (WHERE note = '"+marker+"') FROM drill"); got != "100 100" {
		t.Errorf("the copy of alpha holds %q (rows, marked); want the 100 rows of the moment", got)
	}
	if e.inDB("alpha", "sh", "-c", "hostname") != alphaDB {
		t.Errorf("restoring a copy of alpha replaced alpha's database")
	}
	e.setTenants(set("copy", "-"))
	e.up()
	e.removeVolume(e.prefix + "-copy-pgdata")

	// A spool pg_receivewal cannot go on from (here a segment beyond what
	// alpha's database has written): the agent starts over by itself, with
	// a new slot and a new base backup, and archives again.
	broke := e.breakSpool("alpha")
	var logs []byte
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		s, err := e.backupStatus("alpha")
		logs, _ = exec.Command("docker", "logs", e.agent("alpha")).CombinedOutput()
		if err == nil && s.LastBase != nil && s.LastBase.End.After(broke) && s.CaughtUp.After(s.LastBase.End) && strings.Contains(string(logs), "cannot go on from the spool") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alpha's agent, 2 min after its spool broke, has not started over (a new slot, a new base backup, its log archived): %+v, %v\nits log:\n%s", s, err, tail(string(logs), 6000))
		}
	}
	t.Logf("alpha's agent started over and archives again, %s after its spool broke", time.Since(broke).Round(100*time.Millisecond))
	if !strings.Contains(string(logs), "ahead of the WAL flush position") {
		t.Errorf("alpha's agent's log does not name the cause (ahead of the WAL flush position):\n%s", tail(string(logs), 6000))
	}

	// A broken repository: reported by the agent's state and by `pulumi
	// preview`, naming the tenant; the tenant keeps serving; archiving
	// catches up once it is fixed.
	breakRepo()
	broken := time.Now()
	e.psql("beta", "CREATE TABLE during_outage AS SELECT g FROM generate_series(1, 1000) g")
	// The agent calls a step failing after a minute of failures, and
	// writes its verdict at least every 30 s. The log waiting unsent is
	// reported a minute after it was written, which can come first: restic
	// retries a push to the stopped server a while before the step counts
	// as failed (CI saw the log reported alone, 1m36s after the break).
	problems := e.waitProblems("beta", "failing since", 4*time.Minute)
	t.Logf("beta's agent reports %q %s after the repository broke", problems, time.Since(broken).Round(time.Second))
	warnings := strings.Join(e.previewWarnings(), "\n")
	if !strings.Contains(warnings, "tenant beta: backups need attention") || !strings.Contains(warnings, "failing since") {
		t.Errorf("pulumi preview with beta's repository broken warns:\n%s\nwant a warning naming beta and its failing step", warnings)
	}
	if code, _ := e.get("beta.polls.local", "/"); code != http.StatusOK {
		t.Errorf("beta with its repository broken answers %d; want 200", code)
	}
	fixRepo()
	e.archived("beta", time.Now(), 2*time.Minute)
	e.waitProblems("beta", "", 2*time.Minute)
	if warnings := strings.Join(e.previewWarnings(), "\n"); strings.Contains(warnings, "tenant beta: backups need attention") {
		t.Errorf("pulumi preview with beta's repository fixed still warns:\n%s", warnings)
	}

	// A drill proves beta's backups: restored into a scratch database and
	// compared table by table, with the RPO measured.
	e.archived("beta", time.Now(), 90*time.Second)
	drill := e.docker("exec", e.agent("beta"), "polls-agent", "backup", "drill")
	t.Logf("drill of beta:\n%s", drill)
	if !strings.Contains(drill, "public.during_outage") || !strings.Contains(drill, "RPO") || !strings.Contains(drill, "the scratch copy is removed") {
		t.Errorf("the drill's report lacks the table written during the outage, the RPO or the clean-up:\n%s", drill)
	}
	var d struct {
		Tables []struct {
			Table          string
			Live, Restored int64
		}
		RPO time.Duration
	}
	if err := json.Unmarshal([]byte(e.docker("exec", e.agent("beta"), "polls-agent", "backup", "drill", "--json")), &d); err != nil {
		t.Fatalf("drill --json: %v", err)
	}
	for _, tb := range d.Tables {
		if tb.Live != tb.Restored {
			t.Errorf("drill: %s has %d rows live and %d restored with no writes between", tb.Table, tb.Live, tb.Restored)
		}
	}
	if d.RPO > 60*time.Second {
		t.Errorf("drill: RPO %s; want at most 60 s", d.RPO)
	}
	t.Logf("drill: %d tables equal, RPO %s", len(d.Tables), d.RPO)
}

// tenantsWith renders alpha, beta, gamma and any other tenant settings
// name as polls:tenants, each with its settings ("-" leaves a tenant out).
func tenantsWith(settings map[string]string) string {
	names := []string{"alpha", "beta", "gamma"}
	for t := range settings {
		if !slices.Contains(names, t) {
			names = append(names, t)
		}
	}
	slices.Sort(names)
	var parts []string
	for _, t := range names {
		s, ok := settings[t]
		if s == "-" {
			continue
		}
		if !ok {
			s = "{}"
		}
		parts = append(parts, strconv.Quote(t)+":"+s)
	}
	return "{" + strings.Join(parts, ",") + "}"
}
