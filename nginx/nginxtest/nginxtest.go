// Package nginxtest runs Debian's real nginx on loopback for tests: `nginx -t`
// on a rendered router config, or a foreground nginx in front of test servers.
package nginxtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/polls-tenants/polls/nginx"
)

// Binary returns the path of the nginx binary, or skips the test naming
// exactly what is missing.
func Binary(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	tb.Skip("nginx binary not found on PATH or at /usr/sbin/nginx: apt-get install nginx-light (or nginx)")
	return ""
}

// WriteMain writes a main nginx.conf into dir that mirrors the official
// image's http context around the rendered include, with every path inside
// dir, and returns its path.
func WriteMain(tb testing.TB, dir string, rendered []byte) string {
	tb.Helper()
	include := filepath.Join(dir, "polls.conf")
	if err := os.WriteFile(include, rendered, 0o644); err != nil {
		tb.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	main := fmt.Sprintf(`%sworker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log notice;
events { worker_connections 256; }
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[3]s;
}
`, user, dir, include)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Check runs `nginx -t` on the rendered include and fails the test with
// nginx's own message if it is rejected.
func Check(tb testing.TB, rendered []byte) {
	tb.Helper()
	bin := Binary(tb)
	dir := tb.TempDir()
	main := WriteMain(tb, dir, rendered)
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", main).CombinedOutput(); err != nil {
		tb.Fatalf("nginx -t rejected the config: %v\n%s\nconfig:\n%s", err, out, rendered)
	}
}

// Start runs nginx in the foreground with the rendered include until the
// test ends, and waits until addr (host:port, from the rendered listen
// directive) accepts connections.
func Start(tb testing.TB, rendered []byte, addr string) {
	tb.Helper()
	bin := Binary(tb)
	dir := tb.TempDir()
	main := WriteMain(tb, dir, rendered)
	cmd := exec.Command(bin, "-p", dir, "-c", main, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start nginx: %v", err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_, _ = cmd.Process.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			tb.Fatalf("nginx did not listen on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago and that
// it has not returned before in this process. The kernel may hand a port
// just closed out again: CI once got the same port for a router and for the
// "down" upstream behind it, so nginx proxied to itself in a loop.
func FreePort(tb testing.TB) int {
	tb.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
}

// handedOut is every port FreePort has returned.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// WriteCertificate writes a self-signed certificate and key for host into
// dir and returns their paths as an nginx.TLS.
func WriteCertificate(tb testing.TB, dir, host string) *nginx.TLS {
	tb.Helper()
	certPEM, keyPEM := SelfSigned(tb, host)
	t := &nginx.TLS{CertificatePath: filepath.Join(dir, "cert.pem"), KeyPath: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(t.CertificatePath, certPEM, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(t.KeyPath, keyPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	return t
}

// SelfSigned returns a PEM certificate and PKCS#8 key valid for host.
func SelfSigned(tb testing.TB, host string) (certPEM, keyPEM []byte) {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host, "*." + host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		tb.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}
