package dockerapi

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sshd starts a real sshd on a loopback port that lets root in with a key
// made for the test, and returns an ssh config file that reaches it as
// host polls-test-engine: its port, user, key and known host key, the way
// a user's ~/.ssh/config would. Behind it, `docker system dial-stdio`
// reaches the local engine. It also returns sshd's port. It skips, naming
// what is missing, without root, sshd, ssh or a local engine.
func sshd(t *testing.T) (config string, port int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root, for sshd to log a user in")
	}
	sshdPath, err := exec.LookPath("sshd")
	if err != nil {
		sshdPath = "/usr/sbin/sshd"
	}
	if _, err := os.Stat(sshdPath); err != nil {
		t.Skip("skipped: sshd is missing (apt-get install openssh-server)")
	}
	for _, tool := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: %s is not on PATH (apt-get install openssh-client)", tool)
		}
	}
	if h := os.Getenv("DOCKER_HOST"); h != "" && h != DefaultHost {
		t.Skipf("skipped: DOCKER_HOST is %s, which a remote `docker system dial-stdio` does not see", h)
	}
	engine(t) // skips without the docker CLI or a running engine

	dir := t.TempDir()
	keygen := func(name string) {
		t.Helper()
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", filepath.Join(dir, name)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %s: %v\n%s", name, err, out)
		}
	}
	keygen("host_key")
	keygen("id_ed25519")
	keygen("stranger") // a key sshd does not accept
	keygen("forced")   // a key whose session runs a command that fails
	pub := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	write := func(name, text string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("authorized_keys", pub("id_ed25519")+"\n"+
		`command="echo this host has no docker CLI >&2; exit 127" `+pub("forced")+"\n")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close()

	// StrictModes is off as the keys sit under the world-writable /tmp;
	// PAM is off as a container's session modules (loginuid) may refuse.
	conf := write("sshd_config", fmt.Sprintf(`ListenAddress %s
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
`, addr, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys")))
	// sshd's privilege separation directory, which the ssh service's own
	// start script makes.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sshdPath, "-t", "-f", conf).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v\n%s", err, out)
	}
	var log bytes.Buffer
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", conf)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("sshd's log:\n%s", log.String())
		}
	})
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr.String()); err == nil {
			c.Close()
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("sshd does not listen on %s:\n%s", addr, log.String())
		}
	}

	known := write("known_hosts", fmt.Sprintf("[127.0.0.1]:%d %s\n", addr.Port, pub("host_key")))
	write("no_known_hosts", "")
	return write("ssh_config", fmt.Sprintf(`Host polls-test-engine
  HostName 127.0.0.1
  Port %d
  User root

Host polls-test-stranger
  HostName 127.0.0.1
  Port %d
  User root
  IdentityFile %s

Host polls-test-forced
  HostName 127.0.0.1
  Port %d
  User root
  IdentityFile %s

Host polls-test-unknown-host
  HostName 127.0.0.1
  Port %d
  User root
  UserKnownHostsFile %s

Host polls-test-engine polls-test-unknown-host 127.0.0.1
  IdentityFile %s

Host *
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  LogLevel ERROR
`, addr.Port, addr.Port, filepath.Join(dir, "stranger"), addr.Port, filepath.Join(dir, "forced"), addr.Port, filepath.Join(dir, "no_known_hosts"),
		filepath.Join(dir, "id_ed25519"), known)), addr.Port
}

// TestSSH ensures a client of an ssh:// host reaches the engine through a
// real sshd and `docker system dial-stdio`, user and port coming from the
// ssh config or from the URL: it negotiates the engine's API version,
// lists networks, runs a health check in a container (an attached exec)
// and reads a container's log.
func TestSSH(t *testing.T) {
	config, port := sshd(t)
	out, err := exec.Command("docker", "version", "--format", "{{.Server.APIVersion}}").Output()
	if err != nil {
		t.Fatalf("docker version: %v", err)
	}
	api := strings.TrimSpace(string(out))
	for _, host := range []string{"ssh://polls-test-engine", fmt.Sprintf("ssh://root@127.0.0.1:%d", port)} {
		t.Run(host, func(t *testing.T) {
			c, err := New(host, "-F", config)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			nets, err := c.Networks(t.Context())
			if err != nil {
				t.Fatalf("Networks over ssh: %v", err)
			}
			if !hasNetwork(nets, "bridge") {
				t.Errorf("Networks over ssh = %+v; want the engine's bridge", nets)
			}
			if got := c.api.ClientVersion(); got != api {
				t.Errorf("negotiated API version %s; the engine's is %s", got, api)
			}
		})
	}

	c, err := New("ssh://polls-test-engine", "-F", config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	healthy := run(t, "--health-cmd", "test -f /tmp/ready", "--health-interval", "1h", testImage,
		"sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 300")
	if err := c.Wait(t.Context(), healthy, time.Minute); err != nil {
		t.Errorf("Wait over ssh: %v", err)
	}
	exited := run(t, "--health-cmd", "true", "--health-interval", "1h", testImage,
		"sh", "-c", "echo migrating; echo cannot reach the database >&2; exit 3")
	err = c.Wait(t.Context(), exited, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "exited with status 3") || !strings.Contains(err.Error(), "migrating") || !strings.Contains(err.Error(), "cannot reach the database") {
		t.Errorf("Wait over ssh = %v; want the exit status and both log lines", err)
	}
}

// TestSSHRefused ensures a refused ssh session fails at once (BatchMode: no
// prompt) with what ssh or the remote command said: a key the host does not
// accept, a host key not in known_hosts, a remote command that fails (as
// on a host without the docker CLI).
func TestSSHRefused(t *testing.T) {
	config, _ := sshd(t)
	tests := []struct{ host, want string }{
		{"ssh://polls-test-stranger", "Permission denied"},
		{"ssh://polls-test-unknown-host", "Host key verification failed"},
		{"ssh://polls-test-forced", "exit status 127: this host has no docker CLI"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			c, err := New(tt.host, "-F", config)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			_, err = c.Networks(ctx)
			t.Logf("Networks: %v", err)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Networks = %v; want an error saying %q", err, tt.want)
			}
		})
	}
}

func hasNetwork(nets []Network, name string) bool {
	for _, n := range nets {
		if n.Name == name {
			return true
		}
	}
	return false
}
