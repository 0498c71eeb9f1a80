package e2e

import (
	"os/exec"
	"strings"
	"time"
)

// orphanScript, run in a database container, leaves a child orphaned to
// PID 1 and kills it with SIGPIPE, as a health check killed on its timeout
// leaves its psql behind to die; it prints PID 1's command line, the
// orphan's parent, what became of it (reaped, or its state) and the
// postmaster's pid and parent, separated by |.
const orphanScript = `sh -c 'sleep 60 >/dev/null 2>&1 & echo $! >/tmp/polls-orphan'
o=$(cat /tmp/polls-orphan)
parent=$(cut -d' ' -f4 /proc/$o/stat)
kill -PIPE $o
i=0
while [ -e /proc/$o ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
state=reaped
[ -e /proc/$o ] && state=$(cut -d' ' -f3 /proc/$o/stat)
pm=$(head -n 1 "$PGDATA/postmaster.pid")
printf '%s|%s|%s|%s|%s\n' "$(tr '\0' ' ' </proc/1/cmdline)" "$parent" "$state" "$pm" "$(cut -d' ' -f4 /proc/$pm/stat)"`

// checkDBInit ensures the tenant's database runs under an init, firstPID1
// being how PID 1's command line starts: a child orphaned to it and killed
// by a signal is reaped, and PostgreSQL, not PID 1 but PID 1's child, does
// not take it for one of its own crashed backends (which would restart
// every connection).
func (e *env) checkDBInit(tenant, firstPID1 string) {
	e.t.Helper()
	since := time.Now().Add(-time.Second).Format(time.RFC3339Nano)
	out := e.inDB(tenant, "sh", "-c", orphanScript)
	f := strings.Split(out, "|")
	if len(f) != 5 || !strings.HasPrefix(f[0], firstPID1) || f[1] != "1" || f[2] != "reaped" || f[3] == "1" || f[4] != "1" {
		e.t.Errorf("%s's database: PID 1 | orphan's parent | orphan after SIGPIPE | postmaster | its parent = %q; want %s… | 1 | reaped | not 1 | 1", tenant, out, firstPID1)
	}
	args := []string{"logs", "--since", since}
	host, id := "", e.prefix+"-"+tenant+"-db"
	if e.dbContainer != nil {
		host, id = e.dbContainer(tenant)
	}
	if host != "" {
		args = append([]string{"-H", host}, args...)
	}
	logs, err := exec.Command("docker", append(args, id)...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("docker logs of %s's database: %v\n%s", tenant, err, logs)
	}
	if strings.Contains(string(logs), "terminated by signal") {
		e.t.Errorf("%s's database took the orphan for a crashed backend:\n%s", tenant, logs)
	}
}

// checkFastShutdowns ensures every stopped task of the tenant's database
// on the engine at host ("" for the local one) exited 0 after PostgreSQL's
// fast shutdown: SIGINT reached the server through its init, and it
// stopped cleanly within the grace period (Swarm kills with 137 after it).
// It returns how many it checked.
func (e *env) checkFastShutdowns(tenant, host string) int {
	e.t.Helper()
	docker := func(a ...string) string {
		if host != "" {
			a = append([]string{"-H", host}, a...)
		}
		return e.docker(a...)
	}
	ids := strings.Fields(docker("ps", "-aq", "--filter", "status=exited", "--filter", "label=com.docker.swarm.service.name="+e.prefix+"-"+tenant+"-db"))
	for _, id := range ids {
		code := docker("inspect", "-f", "{{.State.ExitCode}}", id)
		logs := docker("logs", "--tail", "30", id)
		if code != "0" || !strings.Contains(logs, "received fast shutdown request") || !strings.Contains(logs, "database system is shut down") {
			e.t.Errorf("%s's stopped database task %s exited %s; want 0 after a fast shutdown. Its last log lines:\n%s", tenant, id, code, logs)
		}
	}
	return len(ids)
}

// pickyImage builds an app image from base that migrates and serves as
// base does, but refuses to serve when reject.polls.local is among its
// hosts: with it, a change of settings alone (the same image) makes a
// release that never becomes healthy.
func (e *env) pickyImage(base, tag string) {
	e.t.Helper()
	dockerfile := "FROM " + base + " AS app\n" +
		"FROM polls-local/debian:bookworm\n" +
		"COPY --from=app /usr/local/bin/polls /usr/local/bin/polls\n" +
		"COPY --from=app /run /run\n" +
		`ENTRYPOINT ["/bin/sh", "-c", "case \"$1,$ALLOWED_HOSTS,\" in serve,*reject.polls.local,*) echo cannot serve reject.polls.local: simulated bad setting >&2; exit 1;; esac; exec /usr/local/bin/polls \"$@\"", "polls"]` + "\n"
	e.buildImage(tag, dockerfile)
}
