package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary plays PID 1 of a new PID namespace when run with
// helperEnv set: TestInitHelper then supervises the command in helperCmd
// and exits with superviseAsInit's status ("supervise"), or starts it and
// waits for it alone, reaping nothing else ("noreap"), as a PID 1 that is
// no init (a bare postmaster) does.
const (
	helperEnv = "POLLS_PGSTART_INIT_HELPER"
	helperCmd = "POLLS_PGSTART_INIT_CMD"
)

// TestInitHelper is not a test: it is PID 1 for the tests below.
func TestInitHelper(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("run by the tests below as PID 1 of a new PID namespace")
	}
	argv := []string{"sh", "-c", os.Getenv(helperCmd)}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "helper: not PID 1")
		os.Exit(99)
	}
	switch mode {
	case "supervise":
		os.Exit(superviseAsInit("/bin/sh", argv, os.Environ()))
	case "noreap":
		pid, err := syscall.ForkExec("/bin/sh", argv, &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}})
		if err != nil {
			os.Exit(98)
		}
		var ws syscall.WaitStatus
		for {
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != syscall.EINTR {
				break
			}
		}
		os.Exit(ws.ExitStatus())
	}
	os.Exit(97)
}

// pid1 is a run of the helper as PID 1 of its own PID namespace.
type pid1 struct {
	cmd   *exec.Cmd
	lines chan string // the command's standard output, line by line
	done  chan error
}

// startPID1 starts the helper in mode with script as its one child, as
// It skips the test where PID namespaces cannot be made.
func startPID1(t *testing.T, mode, script string) *pid1 {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("init test skipped: it needs root, to make a PID namespace in which pgstart is PID 1")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInitHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperCmd+"="+script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
			t.Skipf("init test skipped: no PID namespace can be made here: %v", err)
		}
		t.Fatal(err)
	}
	p := &pid1{cmd: cmd, lines: make(chan string, 100), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// expect waits for the command to print line.
func (p *pid1) expect(t *testing.T, line string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("the command ended before printing %q", line)
			}
			if l == line {
				return
			}
		case <-deadline:
			t.Fatalf("the command did not print %q within %s", line, within)
		}
	}
}

// exited reports, without waiting, whether PID 1 has exited. (Whether it
// has children says nothing in its first milliseconds, before it has
// started its command: a test that read it so failed at once, in CI.)
func (p *pid1) exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// exit waits for PID 1 to exit and returns its status.
func (p *pid1) exit(t *testing.T, within time.Duration) int {
	t.Helper()
	go func() {
		for range p.lines {
		}
	}()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		var x *exec.ExitError
		if errors.As(err, &x) {
			return x.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("PID 1 did not exit within %s", within)
		return -1
	}
}

// children returns PID 1's children, as the host sees them: pid to state
// (R, S, Z...) and command line.
func children(t *testing.T, parent int) map[int][2]string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][2]string{}
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces.
		s := string(b)
		rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(rest) < 2 || rest[1] != strconv.Itoa(parent) {
			continue
		}
		cmdline, _ := os.ReadFile(d + "/cmdline")
		pid, _ := strconv.Atoi(filepath.Base(d))
		out[pid] = [2]string{rest[0], strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))}
	}
	return out
}

// orphanScript leaves an orphan behind, as a health check killed on its
// timeout does: an inner shell starts `sleep 1.5` in the background and
// exits at once, so the kernel gives the sleep to PID 1. It then waits to
// be stopped.
const orphanScript = `sh -c 'sleep 1.5 &'; echo orphaned; while :; do sleep 0.1; done`

// TestInitReapsOrphans ensures that, as PID 1, pgstart reaps a child it
// never started (the orphan of a killed health check) once it exits, where
// a PID 1 that waits only for its own child leaves it a zombie.
func TestInitReapsOrphans(t *testing.T) {
	for _, tt := range []struct {
		mode   string
		zombie bool
	}{{"supervise", false}, {"noreap", true}} {
		t.Run(tt.mode, func(t *testing.T) {
			p := startPID1(t, tt.mode, orphanScript)
			p.expect(t, "orphaned", 10*time.Second)
			init := p.cmd.Process.Pid
			// The orphan is PID 1's child now; once it exited, it is gone
			// (reaped) or a zombie (not).
			// The forked shell may not have become sleep yet on a busy
			// machine: look for a few seconds.
			orphan := 0
			for deadline := time.Now().Add(5 * time.Second); orphan == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				for pid, c := range children(t, init) {
					if c[1] == "sleep 1.5" {
						orphan = pid
					}
				}
			}
			if orphan == 0 {
				t.Fatalf("no orphaned sleep among PID 1's children %v: the test did not make one", children(t, init))
			}
			time.Sleep(3 * time.Second)
			c, there := children(t, init)[orphan]
			switch {
			case tt.zombie && (!there || c[0] != "Z"):
				t.Fatalf("with no init the orphan is %v (there: %v); want a zombie: the test cannot tell reaping", c, there)
			case !tt.zombie && there:
				t.Errorf("the orphan %d is still PID 1's child, state %s, 3 s after it was started for 1.5 s; want it reaped", orphan, c[0])
			}
			for pid, c := range children(t, init) {
				if c[0] == "Z" && !tt.zombie {
					t.Errorf("PID 1 has a zombie child %d (%s)", pid, c[1])
				}
			}
		})
	}
}

// TestInitForwardsSignals ensures the stop signals reach the child, and
// PID 1 exits with the child's status, or 128 plus the signal that ended
// it.
func TestInitForwardsSignals(t *testing.T) {
	tests := []struct {
		sig  syscall.Signal
		want int
	}{
		{syscall.SIGTERM, 7},   // the script's trap exits 7
		{syscall.SIGHUP, 9},    // the script's trap exits 9
		{syscall.SIGINT, 130},  // no trap: the shell dies of it
		{syscall.SIGQUIT, 131}, // no trap: the shell dies of it
	}
	for _, tt := range tests {
		t.Run(tt.sig.String(), func(t *testing.T) {
			p := startPID1(t, "supervise", `trap 'exit 7' TERM; trap 'exit 9' HUP; echo ready; while :; do sleep 0.1; done`)
			p.expect(t, "ready", 10*time.Second)
			if err := p.cmd.Process.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			if got := p.exit(t, 10*time.Second); got != tt.want {
				t.Errorf("after %s PID 1 exited with %d; want %d", tt.sig, got, tt.want)
			}
		})
	}
}

// TestInitStopsPostgreSQLFast ensures PostgreSQL under pgstart as PID 1
// stops with its fast shutdown on SIGINT, the services' stop signal: the
// server logs it, shuts down cleanly, and PID 1 exits 0 well within the
// services' 30 s grace period. It runs Debian's postgresql binaries.
func TestInitStopsPostgreSQLFast(t *testing.T) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		t.Skip("init test skipped: no PostgreSQL server under /usr/lib/postgresql/*/bin: apt-get install postgresql")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	if os.Geteuid() != 0 {
		t.Skip("init test skipped: it needs root, to make a PID namespace in which pgstart is PID 1")
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Skipf("init test skipped: PostgreSQL refuses to run as root and there is no postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Not in t.TempDir(), whose parent only root may enter.
	dir, err := os.MkdirTemp("", "pgstart-init-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	logFile := filepath.Join(dir, "server.log")
	// As docker-entrypoint.sh does, the shell initialises the data
	// directory and then execs the server: PID 1's child is the postmaster.
	// PostgreSQL refuses to run as root: setpriv (util-linux) becomes the
	// postgres user and execs, as gosu does in the image.
	script := fmt.Sprintf("exec setpriv --reuid %[5]d --regid %[6]d --clear-groups sh -c '%[1]s/initdb -D %[2]s -A trust -U postgres >/dev/null && exec %[1]s/postgres -D %[2]s -k %[3]s -c listen_addresses= >%[4]s 2>&1'",
		bin, data, dir, logFile, uid, gid)
	p := startPID1(t, "supervise", script)
	for deadline := time.Now().Add(60 * time.Second); exec.Command(bin+"/pg_isready", "-q", "-h", dir).Run() != nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) || p.exited() {
			b, _ := os.ReadFile(logFile)
			t.Fatalf("PostgreSQL not ready (within 60 s, or it exited); its log:\n%s", b)
		}
	}
	if c := children(t, p.cmd.Process.Pid); len(c) != 1 || !strings.Contains(fmt.Sprint(c), "postgres -D") {
		t.Fatalf("PID 1's children: %v; want the postmaster alone", c)
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	status := p.exit(t, 30*time.Second)
	took := time.Since(start)
	b, _ := os.ReadFile(logFile)
	log := string(b)
	if status != 0 || !strings.Contains(log, "received fast shutdown request") || !strings.Contains(log, "database system is shut down") {
		t.Errorf("after SIGINT PID 1 exited %d in %s; want 0 after PostgreSQL's fast shutdown. Server log:\n%s", status, took.Round(time.Millisecond), log)
	}
	t.Logf("PostgreSQL stopped %s after SIGINT to pgstart as PID 1", took.Round(time.Millisecond))
}
