package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// pebble is a real ACME server on this machine: Debian's pebble, with
// pebble-challtestsrv as its DNS (every name resolves to 127.0.0.1, where
// the router publishes its HTTP port, and DNS-01 records are set through
// its management API), and an adapter that speaks lego's httpreq DNS
// provider protocol to it, as an operator's own DNS API would.
type pebble struct {
	// Directory is the ACME directory URL, on the Docker bridge's address
	// so the companion's container reaches it.
	Directory string
	// CARoot is the PEM root of pebble's own HTTPS certificate (for
	// polls:acmeCaRoot); Roots is the pool of the CA pebble issues from.
	CARoot  string
	Roots   *x509.CertPool
	RootPEM string
	// DNS is challtestsrv's DNS address and HTTPReq the adapter's URL.
	DNS, HTTPReq string
	// User and Password are what the adapter requires (basic auth).
	User, Password string
	// Presented counts DNS-01 records set through the adapter.
	Presented atomic.Int64
	dir       string
}

// requirePebble skips the test, naming what is missing, unless Debian's
// pebble and pebble-challtestsrv are installed and the Docker bridge has
// an address the companion can reach the host on.
func requirePebble(t *testing.T) {
	t.Helper()
	var missing []string
	for _, bin := range []string{"pebble", "pebble-challtestsrv", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		t.Skipf("ACME end-to-end test skipped: missing %s (apt-get install pebble curl)", strings.Join(missing, ", "))
	}
	if _, err := bridgeAddress(); err != nil {
		t.Skipf("ACME end-to-end test skipped: %v", err)
	}
	if exec.Command("docker", "image", "inspect", "polls-local/golang:1.26").Run() != nil {
		t.Skip("ACME end-to-end test skipped: missing image polls-local/golang:1.26, which builds polls-agent (run scripts/images.sh)")
	}
}

// bridgeAddress is the host's address on Docker's default bridge, which
// every container on it reaches.
func bridgeAddress() (string, error) {
	ifc, err := net.InterfaceByName("docker0")
	if err != nil {
		return "", fmt.Errorf("no docker0 interface: %w", err)
	}
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if ip, _, err := net.ParseCIDR(a.String()); err == nil && ip.To4() != nil {
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("docker0 has no IPv4 address")
}

// startPebble runs pebble and challtestsrv until the test ends. HTTP-01
// is validated against httpPort on 127.0.0.1; refused names the hosts
// pebble's policy refuses.
func startPebble(t *testing.T, httpPort int, avoid []int, refused ...string) *pebble {
	t.Helper()
	gw, err := bridgeAddress()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &pebble{dir: dir, User: "polls", Password: "httpreq-" + randomHex(6)}
	caPEM, srvCert, srvKey := serverCertificate(t, gw)
	p.CARoot = string(caPEM)
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ports := freePorts(t, 5, append(avoid, httpPort))
	acmePort, mgmtPort, dnsPort, chalMgmt, adapterPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	cfg, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress": fmt.Sprintf("%s:%d", gw, acmePort), "managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate": write("pebble.pem", srvCert), "privateKey": write("pebble.key", srvKey),
		"httpPort": httpPort, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": false,
		"domainBlocklist": refused,
	}})
	p.DNS = fmt.Sprintf("%s:%d", gw, dnsPort)
	// AAAA answers off: pebble would try ::1 first, where nothing listens.
	start(t, dir, "challtestsrv", exec.Command("pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-dns01", p.DNS, "-management", fmt.Sprintf("127.0.0.1:%d", chalMgmt), "-http01", "", "-https01", "", "-tlsalpn01", ""))
	peb := exec.Command("pebble", "-config", write("pebble.json", cfg), "-dnsserver", p.DNS)
	// No random validation delays, no nonce rejections: the test measures
	// the stack, not pebble's chaos.
	peb.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	start(t, dir, "pebble", peb)
	p.Directory = fmt.Sprintf("https://%s:%d/dir", gw, acmePort)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	mgmt := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := mgmt.Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				p.RootPEM = string(b)
				p.Roots = x509.NewCertPool()
				p.Roots.AppendCertsFromPEM(b)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble's root not available: %v\n%s", err, readFile(filepath.Join(dir, "pebble.log")))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The httpreq adapter: lego POSTs {"fqdn","value"} to /present and
	// /cleanup; challtestsrv takes {"host","value"} at /set-txt and
	// /clear-txt.
	l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", gw, adapterPort))
	if err != nil {
		t.Fatal(err)
	}
	chal := fmt.Sprintf("http://127.0.0.1:%d", chalMgmt)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, pw, ok := r.BasicAuth(); !ok || u != p.User || pw != p.Password {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		var in struct{ FQDN, Value string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		path, body := "/set-txt", map[string]string{"host": in.FQDN, "value": in.Value}
		if r.URL.Path == "/cleanup" {
			path, body = "/clear-txt", map[string]string{"host": in.FQDN}
		} else {
			p.Presented.Add(1)
		}
		b, _ := json.Marshal(body)
		resp, err := http.Post(chal+path, "application/json", bytes.NewReader(b))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	p.HTTPReq = "http://" + l.Addr().String()
	return p
}

// start runs cmd with its output in dir/<name>.log until the test ends.
func start(t *testing.T, dir, name string, cmd *exec.Cmd) {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			t.Logf("%s log, last part:\n%s", name, tail(readFile(log.Name()), 3000))
		}
	})
}

// freePorts returns n distinct TCP ports that were free on every address
// a moment ago and are not in avoid (ports already promised elsewhere,
// such as the router's).
func freePorts(t *testing.T, n int, avoid []int) []int {
	t.Helper()
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		p := l.Addr().(*net.TCPAddr).Port
		if !slices.Contains(avoid, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// serverCertificate returns a CA's PEM root and a server certificate and
// key it signed for ip and 127.0.0.1: pebble's HTTPS identity, which the
// companion trusts through polls:acmeCaRoot.
func serverCertificate(t *testing.T, ip string) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "polls e2e pebble HTTPS root"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "pebble"},
		IPAddresses: []net.IP{net.ParseIP(ip), net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

// tlsClient talks HTTPS to the router's published port for any host,
// verifying the chain against pebble's root and the name; keepAlive off
// makes every request a new connection, so a new handshake.
func (p *pebble) tlsClient(port int, keepAlive bool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: p.Roots},
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, "127.0.0.1:"+strconv.Itoa(port))
		},
	}}
}

// servedSerial returns the serial (lower-case hex) of the certificate the
// router presents for host, after verifying it against pebble's root.
func (p *pebble) servedSerial(port int, host string) (string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+strconv.Itoa(port), &tls.Config{RootCAs: p.Roots, ServerName: host})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return strings.ToLower(conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)), nil
}
