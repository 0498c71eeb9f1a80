package nginx_test

import (
	"encoding/binary"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/polls-tenants/polls/app/pgtest"
	. "github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/nginx/nginxtest"
)

// TestRealNginxPassesGetOn503 ensures that when one replica of a tenant's
// app cannot reach its database (it answers 503), real nginx with the
// rendered config passes each GET to the replica that can, so no GET
// fails; as a Swarm router does for a task a returning node still runs.
// The replicas are two real app processes behind one name, which a small
// DNS server resolves to both, as Docker's does for a Swarm service.
func TestRealNginxPassesGetOn503(t *testing.T) {
	if testing.Short() {
		t.Skip("real nginx test skipped with -short")
	}
	nginxtest.Binary(t)
	pg := pgtest.Start(t)
	bin := buildApp(t)
	port := nginxtest.FreePort(t)
	pwFile := filepath.Join(t.TempDir(), "admin-password")
	if err := os.WriteFile(pwFile, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "postgres://app:pw@" + ln.Addr().String() + "/app?sslmode=disable"
	ln.Close()
	good := pg.CreateDatabase(t, "replicas")
	env := append(os.Environ(), "TENANT=thor", "ADMIN_PASSWORD_FILE="+pwFile, "ALLOWED_HOSTS=thor.polls.local")
	migrate := exec.Command(bin, "migrate", "-createsuperuser")
	migrate.Env = append(env, "DATABASE_URL="+good)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	// 127.0.0.1 serves; 127.0.0.2, on the same port, cannot reach its
	// database.
	replicas := map[string]string{"127.0.0.1": good, "127.0.0.2": unreachable}
	for ip, db := range replicas {
		addr := ip + ":" + strconv.Itoa(port)
		serveApp(t, bin, append(env, "DATABASE_URL="+db, "LISTEN_ADDR="+addr), "http://"+addr+"/healthz")
	}
	if code, _ := get(t, "http://127.0.0.2:"+strconv.Itoa(port), "thor.polls.local", "/"); code != http.StatusServiceUnavailable {
		t.Fatalf("the replica without its database answers GET / with %d; want 503", code)
	}
	dns := startDNS(t, "thor-app.polls.test", "127.0.0.1", "127.0.0.2")
	listen := "127.0.0.1:" + strconv.Itoa(nginxtest.FreePort(t))
	conf, err := Render(Config{
		Servers:  []Server{{Name: "thor", Hosts: []string{"thor.polls.local"}, Upstream: "thor-app.polls.test:" + strconv.Itoa(port)}},
		Resolver: dns, Listen: listen,
	})
	if err != nil {
		t.Fatal(err)
	}
	nginxtest.Start(t, conf, listen)
	// nginx starts each request at the next of the two addresses: half of
	// them go to the replica without its database first.
	codes := map[int]int{}
	for range 40 {
		code, _ := get(t, "http://"+listen, "thor.polls.local", "/")
		codes[code]++
	}
	if codes[http.StatusOK] != 40 {
		t.Errorf("40 GETs through nginx, one of two replicas answering 503: %v; want every one 200", codes)
	}
}

// startDNS answers A queries for name with addrs, and every other query
// with NXDOMAIN, on a UDP port of 127.0.0.1 it returns as host:port.
func startDNS(t *testing.T, name string, addrs ...string) string {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if reply := dnsReply(buf[:n], name, addrs); reply != nil {
				_, _ = conn.WriteTo(reply, from)
			}
		}
	}()
	return conn.LocalAddr().String()
}

// dnsReply answers one query (RFC 1035, one question), or returns nil for
// a packet that is not one.
func dnsReply(q []byte, name string, addrs []string) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	question := q[12 : i+5]
	qtype := binary.BigEndian.Uint16(q[i+1 : i+3])
	r := append([]byte{}, q[:2]...)
	match := strings.EqualFold(strings.Join(labels, "."), name)
	var answers [][]byte
	if match && qtype == 1 {
		for _, a := range addrs {
			ip := net.ParseIP(a).To4()
			rr := []byte{0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4}
			answers = append(answers, append(rr, ip...))
		}
	}
	flags := uint16(0x8180) // a response, recursion desired and available
	if !match {
		flags |= 3 // NXDOMAIN
	}
	r = binary.BigEndian.AppendUint16(r, flags)
	r = binary.BigEndian.AppendUint16(r, 1)
	r = binary.BigEndian.AppendUint16(r, uint16(len(answers)))
	r = append(r, 0, 0, 0, 0)
	r = append(r, question...)
	for _, a := range answers {
		r = append(r, a...)
	}
	return r
}
