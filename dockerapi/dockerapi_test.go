package dockerapi

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const testImage = "polls-local/debian:bookworm"

// engine returns a client of the local engine, or skips naming what is
// missing.
func engine(t *testing.T) *Client {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("skipped: the docker CLI is not on PATH (apt-get install docker.io)")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("skipped: no running Docker engine (`docker info`: %s)", strings.TrimSpace(string(out)))
	}
	if exec.Command("docker", "image", "inspect", testImage).Run() != nil {
		t.Skipf("skipped: image %s is missing (run scripts/images.sh)", testImage)
	}
	c, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// run starts a container and removes it when the test ends.
func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", append([]string{"run", "-d", "--init", "--network", "none"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run %v: %v\n%s", args, err, out)
	}
	id := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", "-v", id).Run() })
	return id
}

// TestWaitProbesAheadOfTheEngine ensures Wait returns as soon as the health
// check passes, not one engine interval (here an hour) after start.
func TestWaitProbesAheadOfTheEngine(t *testing.T) {
	c := engine(t)
	id := run(t, "--health-cmd", "test -f /tmp/ready", "--health-interval", "1h", testImage,
		"sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 300")
	start := time.Now()
	if err := c.Wait(context.Background(), id, 60*time.Second); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Wait took %s; want it to probe, not wait for the 1h interval", d)
	}
}

// TestWaitFailsAtOnceOnExit ensures a container that exits fails the wait
// right away, with its status and log.
func TestWaitFailsAtOnceOnExit(t *testing.T) {
	c := engine(t)
	id := run(t, "--health-cmd", "true", "--health-interval", "1h", testImage,
		"sh", "-c", "echo cannot reach the database >&2; exit 3")
	start := time.Now()
	err := c.Wait(context.Background(), id, 2*time.Minute)
	if err == nil {
		t.Fatal("Wait succeeded for a container that exited")
	}
	for _, want := range []string{"exited with status 3", "cannot reach the database"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Wait took %s to notice the exit; want it at once", d)
	}
}

// TestWaitReportsTheLastCheck ensures a container that never passes its
// health check fails after the deadline with the check's output.
func TestWaitReportsTheLastCheck(t *testing.T) {
	c := engine(t)
	id := run(t, "--health-cmd", "echo migrations pending; exit 1", "--health-interval", "1h", testImage, "sleep", "300")
	err := c.Wait(context.Background(), id, 10*time.Second)
	if err == nil {
		t.Fatal("Wait succeeded for a container whose check fails")
	}
	for _, want := range []string{"not healthy within 10s", "exit status 1", "migrations pending"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

// TestNetworks ensures the engine's networks come with their subnets.
func TestNetworks(t *testing.T) {
	c := engine(t)
	name := "polls-dockerapi-test"
	if out, err := exec.Command("docker", "network", "create", "--subnet", "10.251.7.0/28", "--label", "polls.tenant=x", name).CombinedOutput(); err != nil {
		t.Fatalf("network create: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", name).Run() })
	nets, err := c.Networks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		if n.Name == name {
			if len(n.Subnets) != 1 || n.Subnets[0].String() != "10.251.7.0/28" || n.Labels["polls.tenant"] != "x" {
				t.Errorf("network %s = %+v; want subnet 10.251.7.0/28 and label polls.tenant=x", name, n)
			}
			return
		}
	}
	t.Errorf("network %s not listed", name)
}

// TestContainers ensures a label filter lists exactly the containers that
// carry it, running or not, with their health.
func TestContainers(t *testing.T) {
	c := engine(t)
	label := "polls.test=" + strings.ReplaceAll(t.Name(), "/", "-") + time.Now().Format("150405.000")
	sick := run(t, "--label", label, "--health-cmd", "false", "--health-interval", "1s", "--health-retries", "1", testImage, "sleep", "300")
	run(t, "--label", label, testImage, "true")
	run(t, testImage, "sleep", "300")
	key, value, _ := strings.Cut(label, "=")
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := c.Containers(context.Background(), map[string]string{key: value})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 {
			t.Fatalf("Containers(%s) listed %d; want the 2 that carry it", label, len(list))
		}
		for _, s := range list {
			if s.ID == sick && s.Health == "unhealthy" && s.State == "running" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Containers never showed %s unhealthy: %+v", sick, list)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestReadFile reads a file a running container wrote, in a volume as the
// agents' state is, through the archive API; a directory or a missing
// path is an error.
func TestReadFile(t *testing.T) {
	c := engine(t)
	id := run(t, "--mount", "type=volume,target=/spool", testImage, "sh", "-c", `printf '{"updated":"x"}' > /spool/state.json && sleep 300`)
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := c.ReadFile(ctx, id, "/spool/state.json")
		if err == nil {
			if string(b) != `{"updated":"x"}` {
				t.Fatalf("ReadFile = %q; want what the container wrote", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ReadFile: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := c.ReadFile(ctx, id, "/spool"); err == nil {
		t.Error("ReadFile of a directory succeeded; want an error")
	}
	if _, err := c.ReadFile(ctx, id, "/spool/missing.json"); err == nil {
		t.Error("ReadFile of a missing file succeeded; want an error")
	}
}

// TestWaitBoundsProbes ensures that however many containers are waited for
// at once, at most Probes health checks run at a time, and that they do
// run side by side: each check counts the checks in flight in a folder all
// the containers share.
func TestWaitBoundsProbes(t *testing.T) {
	c := engine(t)
	dir := t.TempDir()
	check := `f=/shared/$(hostname).$$; touch $f; ls /shared | grep -vc log >>/shared/log; sleep 0.5; rm $f; exit 1`
	ids := make([]string, Probes+4)
	for i := range ids {
		ids[i] = run(t, "-v", dir+":/shared", "--health-cmd", check, "--health-interval", "1h", testImage, "sleep", "300")
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() { _ = c.Wait(context.Background(), id, 8*time.Second) })
	}
	wg.Wait()
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatalf("no check ran: %v", err)
	}
	most, checks := 0, strings.Fields(string(b))
	for _, f := range checks {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("log line %q: %v", f, err)
		}
		most = max(most, n)
	}
	if most > Probes {
		t.Errorf("%d checks ran at once; want at most Probes = %d", most, Probes)
	}
	if most < 2 {
		t.Errorf("at most %d check ran at once; want them side by side (up to %d)", most, Probes)
	}
	t.Logf("%d checks over %d containers, at most %d at once", len(checks), len(ids), most)
}
