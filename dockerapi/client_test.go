package dockerapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestNewHosts ensures New accepts the hosts the provider does, falls back
// to DOCKER_HOST and then the local socket, and refuses the rest naming
// the host.
func TestNewHosts(t *testing.T) {
	t.Setenv("DOCKER_TLS_VERIFY", "")
	tests := []struct {
		host, env, wantHost, wantErr string
	}{
		{"", "", DefaultHost, ""},
		{"", "tcp://engine.invalid:2375", "tcp://engine.invalid:2375", ""},
		{"unix:///run/user/1000/docker.sock", "tcp://engine.invalid:2375", "unix:///run/user/1000/docker.sock", ""},
		{"ssh://deploy@prod-1:2222", "", "ssh://deploy@prod-1:2222", ""},
		{"ftp://prod-1", "", "", `docker host "ftp://prod-1": scheme "ftp" is not one of unix, tcp, ssh`},
		{"prod-1", "", "", `docker host "prod-1": scheme "" is not one of unix, tcp, ssh`},
	}
	for _, tt := range tests {
		t.Run(tt.host+"|"+tt.env, func(t *testing.T) {
			t.Setenv("DOCKER_HOST", tt.env)
			c, err := New(tt.host)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("New(%q) = %v; want error %q", tt.host, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Host() != tt.wantHost {
				t.Errorf("Host() = %q; want %q", c.Host(), tt.wantHost)
			}
		})
	}
}

// TestTLS ensures a tcp host with DOCKER_TLS_VERIFY set is reached over
// TLS, verifying the engine against DOCKER_CERT_PATH's ca.pem and showing
// its client certificate, and that missing TLS material is named.
func TestTLS(t *testing.T) {
	var clientCerts atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clientCerts.Store(int32(len(r.TLS.PeerCertificates)))
		switch r.URL.Path {
		case "/_ping":
			w.Header().Set("Api-Version", "1.41")
		case "/v1.41/networks":
			reply(w, []map[string]any{{"Name": "bridge"}})
		default:
			t.Errorf("unexpected request %s", r.URL.Path)
		}
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	write := func(name, typ string, der []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", srv.Certificate().Raw)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	write("cert.pem", "CERTIFICATE", der)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write("key.pem", "EC PRIVATE KEY", keyDER)

	t.Setenv("DOCKER_TLS_VERIFY", "1")
	t.Setenv("DOCKER_CERT_PATH", dir)
	// The test certificate is for 127.0.0.1, as the engine's would be for
	// its own address.
	host := "tcp://" + srv.Listener.Addr().String()
	c, err := New(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	nets, err := c.Networks(t.Context())
	if err != nil || len(nets) != 1 || nets[0].Name != "bridge" {
		t.Fatalf("Networks over TLS = %+v, %v; want bridge", nets, err)
	}
	if n := clientCerts.Load(); n != 1 {
		t.Errorf("the engine saw %d client certificates; want 1", n)
	}

	t.Setenv("DOCKER_CERT_PATH", t.TempDir())
	if _, err := New(host); err == nil || !strings.Contains(err.Error(), "ca.pem") {
		t.Errorf("New without TLS material = %v; want an error naming ca.pem", err)
	}
}
