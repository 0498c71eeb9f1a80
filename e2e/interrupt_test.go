package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// killedRelease releases version v to tenants (the stack's config is set
// with tenants list) by a `pulumi up` with PULUMI_SKIP_CHECKPOINTS=true, and
// kills that CLI and every process it started, at once, as a lost CI
// runner loses them, as soon as one tenant serves v. It then runs
// scripts/recover.sh, all of it under a request loop, and checks README's
// promise: no request failed, every tenant serves v, no container, service,
// secret or network of the stack is left that the state does not hold, and
// a preview plans no change.
func (e *env) killedRelease(v, list string, tenants []string) {
	e.t.Helper()
	e.release(v)
	e.setTenants(list)
	root := e.stack.Workspace().WorkDir()
	env := os.Environ()
	for k, val := range e.stack.Workspace().GetEnvVars() {
		env = append(env, k+"="+val)
	}
	up := exec.Command("pulumi", "up", "--yes", "--skip-preview", "--stack", e.stack.Name())
	up.Dir, up.Stdout, up.Stderr = root, e.log, e.log
	up.Env = append(env, "PULUMI_SKIP_CHECKPOINTS=true")
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	stop := e.hammer(tenants)
	start := time.Now()
	if err := up.Start(); err != nil {
		e.t.Fatalf("start pulumi up: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	served := ""
	for served == "" {
		select {
		case err := <-exited:
			stop()
			e.t.Fatalf("pulumi up ended (%v) before any tenant served version %s: nothing was interrupted", err, v)
		case <-time.After(100 * time.Millisecond):
		}
		for _, tenant := range tenants {
			if servedVersion(e.base(), tenant) == v {
				served = tenant
				break
			}
		}
	}
	killed := killTree(up.Process.Pid)
	<-exited
	e.t.Logf("killed pulumi up and %d processes it started %s after it began, once %s served version %s", killed-1, time.Since(start).Round(time.Second), served, v)

	start = time.Now()
	rec := exec.Command("scripts/recover.sh", e.stack.Name(), "--cancel")
	rec.Dir, rec.Env = root, env
	out, err := rec.CombinedOutput()
	_, _ = e.log.Write(out)
	sent, failures := stop()
	if err != nil {
		e.t.Fatalf("scripts/recover.sh: %v\n%s", err, tail(string(out), 4000))
	}
	e.t.Logf("scripts/recover.sh took %s: %s; %d requests, %d failed", time.Since(start).Round(time.Second), removedLines(string(out)), sent, len(failures))
	if sent == 0 || len(failures) > 0 {
		e.t.Errorf("while the release was killed and recovered: %d requests, %d failed: %v", sent, len(failures), failures)
	}
	// Each tenant answers 200 with v, by the request loop's measure of a
	// failed request (an error within 5 s, or another status), so a slow
	// answer on a loaded host is not taken for a wrong version.
	client := &http.Client{Timeout: 5 * time.Second}
	for _, tenant := range tenants {
		for range 4 { // on Swarm, each request may reach either replica
			got, status, err := answer(client, e.base(), tenant)
			if err != nil || status != http.StatusOK || got != v {
				e.t.Errorf("%s after the recovery: version %q, status %d, error %v; want version %s, status 200", tenant, got, status, err, v)
				break
			}
		}
	}
	if left := e.unknownToState(); len(left) > 0 {
		e.t.Errorf("after the recovery, the stack's objects the state does not hold:\n%s", strings.Join(left, "\n"))
	}
	e.noChanges()
}

// servedVersion is the X-Polls-Version tenant answers with, "" on any
// failure (the request loop counts those).
func servedVersion(base, tenant string) string {
	v, _, _ := answer(&http.Client{Timeout: 2 * time.Second}, base, tenant)
	return v
}

// answer is tenant's answer to GET / through the router at base: its
// X-Polls-Version and status.
func answer(client *http.Client, base, tenant string) (version string, status int, err error) {
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Host = tenant + ".polls.local"
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, err
	}
	resp.Body.Close()
	return resp.Header.Get("X-Polls-Version"), resp.StatusCode, nil
}

// killTree sends SIGKILL to pid and every process descended from it (the
// plugins run in process groups of their own), and returns how many.
func killTree(pid int) int {
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		f := strings.Fields(rest)
		p, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
		if len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			children[ppid] = append(children[ppid], p)
		}
	}
	all := []int{pid}
	for i := 0; i < len(all); i++ {
		all = append(all, children[all[i]]...)
	}
	for _, p := range all {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	return len(all)
}

// removedLines summarises what scripts/recover.sh removed.
func removedLines(out string) string {
	var removed []string
	for l := range strings.Lines(out) {
		if r, ok := strings.CutPrefix(strings.TrimSpace(l), "removed "); ok {
			removed = append(removed, r)
		}
	}
	if len(removed) == 0 {
		return "removed nothing"
	}
	return "removed " + strings.Join(removed, ", ")
}

// unknownToState lists the stack's containers (not Swarm's tasks),
// services, secrets and tenant networks whose IDs `pulumi stack export`
// does not hold. It reads the engine with the docker CLI, on its own, so
// that it checks package recovery rather than repeats it.
func (e *env) unknownToState() []string {
	e.t.Helper()
	dep, err := e.stack.Export(e.ctx)
	if err != nil {
		e.t.Fatalf("pulumi stack export: %v", err)
	}
	var d struct {
		Resources []struct {
			ID string `json:"id"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(dep.Deployment, &d); err != nil {
		e.t.Fatalf("read the exported state: %v", err)
	}
	// The CLI lists services and secrets by a prefix of their ID.
	known := func(id string) bool {
		for _, r := range d.Resources {
			if r.ID != "" && strings.HasPrefix(r.ID, id) {
				return true
			}
		}
		return false
	}
	var left []string
	check := func(kind string, args ...string) {
		out, err := exec.Command("docker", args...).Output()
		if err != nil {
			if kind == "container" || kind == "network" {
				e.t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
			}
			return // not a Swarm manager: no services or secrets
		}
		for l := range strings.Lines(string(out)) {
			id, name, _ := strings.Cut(strings.TrimSpace(l), " ")
			if id != "" && !known(id) {
				left = append(left, kind+" "+name)
			}
		}
	}
	label := "label=polls.stack=" + e.prefix
	check("container", "ps", "-a", "--no-trunc", "--filter", label, "--format", `{{.ID}} {{.Names}} {{.Label "com.docker.swarm.task.id"}}`)
	check("service", "service", "ls", "--filter", label, "--format", "{{.ID}} {{.Name}}")
	check("secret", "secret", "ls", "--filter", label, "--format", "{{.ID}} {{.Name}}")
	check("network", "network", "ls", "--no-trunc", "--filter", "name="+e.prefix+"-", "--format", "{{.ID}} {{.Name}}")
	var own []string
	for _, l := range left {
		// Swarm tasks carry their service's labels, and a task's ID is
		// not the state's; other stacks' networks may share the prefix.
		if f := strings.Fields(l); len(f) > 2 || (f[0] == "network" && !e.ownNetwork(f[1])) {
			continue
		}
		own = append(own, l)
	}
	return own
}

// ownNetwork reports whether a network named name is one of this stack's:
// its edge network or a tenant's.
func (e *env) ownNetwork(name string) bool {
	return name == e.prefix+"-edge" || strings.HasSuffix(name, "-net") && strings.Count(strings.TrimPrefix(name, e.prefix+"-"), "-") == 1
}
