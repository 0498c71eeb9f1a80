package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polls-tenants/polls/app/internal/postgres"
	"github.com/polls-tenants/polls/app/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// env returns a getenv over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// syncBuffer is a bytes.Buffer safe for a server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runCmd runs the polls command line args with environment e and returns
// its error and log output.
func runCmd(t *testing.T, e map[string]string, args ...string) (string, error) {
	t.Helper()
	var out syncBuffer
	err := run(context.Background(), append([]string{"polls"}, args...), env(e), &out)
	return out.String(), err
}

// writeFile writes content to a new file in a temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// assertLogLines checks that every line of out is JSON with the tenant
// attribute and that none contains secret.
func assertLogLines(t *testing.T, out, tenant, secret string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("log line is not JSON: %s", sc.Text())
			continue
		}
		if line["tenant"] != tenant {
			t.Errorf("log line has tenant %v; want %q: %s", line["tenant"], tenant, sc.Text())
		}
		if secret != "" && strings.Contains(sc.Text(), secret) {
			t.Errorf("log line leaks a secret: %s", sc.Text())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	// Ensures a missing or unknown subcommand and unknown flags fail with usage.
	for _, args := range [][]string{nil, {"frobnicate"}, {"migrate", "-bogus"}, {"serve", "extra"}} {
		out, err := runCmd(t, nil, args...)
		if err == nil {
			t.Errorf("polls %q succeeded; want an error", args)
			continue
		}
		if !strings.Contains(out, "command failed") {
			t.Errorf("polls %q logged %q; want the failure logged", args, out)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	// Ensures missing or conflicting settings stop the commands with an
	// error that names the setting, before anything is touched.
	url := "postgres://u:s3cret@127.0.0.1:1/x"
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"serve"}, map[string]string{"DATABASE_URL": url}, "TENANT"},
		{[]string{"serve"}, map[string]string{"TENANT": "a"}, "neither DATABASE_URL nor DATABASE_URL_FILE"},
		{[]string{"migrate"}, nil, "neither DATABASE_URL nor DATABASE_URL_FILE"},
		{[]string{"migrate"}, map[string]string{"DATABASE_URL": url, "DATABASE_URL_FILE": "/x"}, "both DATABASE_URL and DATABASE_URL_FILE"},
		{[]string{"migrate", "-createsuperuser"}, map[string]string{"DATABASE_URL": url}, "ADMIN_PASSWORD_FILE"},
		{[]string{"createsuperuser"}, map[string]string{"DATABASE_URL": url, "ADMIN_PASSWORD_FILE": "/nonexistent"}, "read ADMIN_PASSWORD_FILE"},
		{[]string{"serve"}, map[string]string{"TENANT": "a", "DATABASE_URL": url, "LISTEN_ADDR": "8000"}, "LISTEN_ADDR"},
	}
	for _, tt := range tests {
		out, err := runCmd(t, tt.env, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("polls %q with %v = %v; want an error containing %q", tt.args, tt.env, err, tt.want)
		}
		assertLogLines(t, out, tt.env["TENANT"], "s3cret")
	}
}

func TestMigrateCreatesSuperuser(t *testing.T) {
	// Ensures migrate -createsuperuser migrates and creates the admin, that
	// both steps are idempotent, and that createsuperuser applies a rotated
	// password, without logging secrets.
	url := pgtest.Shared(t).CreateDatabase(t, "cmd_super")
	pwFile := writeFile(t, "admin_password", "first-pass\n")
	e := map[string]string{
		"TENANT":              "acme",
		"DATABASE_URL_FILE":   writeFile(t, "database_url", url+"\n"),
		"ADMIN_USER":          "boss",
		"ADMIN_PASSWORD_FILE": pwFile,
	}
	for i := range 2 {
		out, err := runCmd(t, e, "migrate", "-createsuperuser")
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i+1, err, out)
		}
		assertLogLines(t, out, "acme", "first-pass")
		assertLogLines(t, out, "acme", pwOf(url))
	}
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.Authenticate(ctx, "boss", "first-pass"); err != nil {
		t.Fatalf("boss cannot log in with the first password: %v", err)
	}

	if err := os.WriteFile(pwFile, []byte("second-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(t, e, "createsuperuser")
	if err != nil {
		t.Fatalf("createsuperuser: %v\n%s", err, out)
	}
	assertLogLines(t, out, "acme", "second-pass")
	if _, err := db.Authenticate(ctx, "boss", "second-pass"); err != nil {
		t.Errorf("boss cannot log in with the rotated password: %v", err)
	}
	if _, err := db.Authenticate(ctx, "boss", "first-pass"); err == nil {
		t.Error("the old password still works after rotation")
	}
}

func TestMigrateFailsAtOnceOnRefusedLogin(t *testing.T) {
	// Ensures migrate, which waits up to 10 minutes for a database that
	// does not answer, gives up at once on one that refuses its password,
	// and says so.
	url := pgtest.Shared(t).CreateDatabase(t, "cmd_refused")
	e := map[string]string{"DATABASE_URL": strings.Replace(url, "@", "x@", 1)}
	start := time.Now()
	_, err := runCmd(t, e, "migrate")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("migrate with a wrong password took %s; want it to fail at once", took.Round(time.Millisecond))
	}
	if err == nil || !strings.Contains(err.Error(), "refused the login") {
		t.Errorf("migrate with a wrong password = %v; want an error saying the database refused the login", err)
	}
}

func TestCreatesuperuserNeedsMigratedDB(t *testing.T) {
	// Ensures createsuperuser on an empty database says to migrate first.
	url := pgtest.Shared(t).CreateDatabase(t, "cmd_unmigrated")
	e := map[string]string{"DATABASE_URL": url, "ADMIN_PASSWORD_FILE": writeFile(t, "pw", "x")}
	if _, err := runCmd(t, e, "createsuperuser"); err == nil || !strings.Contains(err.Error(), "migrate") {
		t.Errorf("createsuperuser on an empty database = %v; want an error saying to migrate", err)
	}
}

func TestConcurrentMigrateCommands(t *testing.T) {
	// Ensures two migrate commands started at once both succeed and leave
	// a ready schema.
	url := pgtest.Shared(t).CreateDatabase(t, "cmd_race")
	e := map[string]string{"DATABASE_URL": url}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() {
			var out syncBuffer
			errs[i] = run(context.Background(), []string{"polls", "migrate"}, env(e), &out)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrate %d: %v", i+1, err)
		}
	}
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ready(context.Background()); err != nil {
		t.Errorf("after two concurrent migrates: %v", err)
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	// Ensures serve answers its probes and a shown page, refuses a form
	// post from another site's page while serving one from its own (its
	// Origin on the same non-default port), and returns nil once its
	// context is cancelled, as on SIGTERM.
	url := pgtest.Shared(t).CreateDatabase(t, "cmd_serve")
	if _, err := runCmd(t, map[string]string{"DATABASE_URL": url}, "migrate"); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	e := map[string]string{"TENANT": "Serve Co", "DATABASE_URL": url, "LISTEN_ADDR": addr, "ALLOWED_HOSTS": "127.0.0.1"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"polls", "serve"}, env(e), &out) }()

	var hcOut syncBuffer
	deadline := time.Now().Add(10 * time.Second)
	for run(ctx, []string{"polls", "healthcheck"}, env(e), &hcOut) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("serve never became ready; log:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET / = %d; want 200", res.StatusCode)
	}
	// A wrong password reaches the handler (401); a forged post does not.
	for origin, want := range map[string]int{"http://" + addr: http.StatusUnauthorized, "http://evil.test": http.StatusForbidden} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/admin/login", strings.NewReader("username=admin&password=wrong"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("POST /admin/login with Origin %s = %d; want %d", origin, res.StatusCode, want)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v after cancel; want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop within 15s of cancel")
	}
	logs := out.String()
	assertLogLines(t, logs, "Serve Co", pwOf(url))
	for _, want := range []string{`"msg":"serving"`, `"msg":"request"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("serve log lacks %s:\n%s", want, logs)
		}
	}
}

func TestServeMigratesFirst(t *testing.T) {
	// Ensures serve -migrate migrates an empty database and ensures the
	// admin before it answers its probe, and that a migration that cannot
	// run (no admin password) fails serve before it ever listens.
	url := pgtest.Shared(t).CreateDatabase(t, "cmd_serve_migrate")
	addr := freeAddr(t)
	e := map[string]string{
		"TENANT": "acme", "DATABASE_URL": url, "LISTEN_ADDR": addr, "ALLOWED_HOSTS": "127.0.0.1",
		"ADMIN_USER": "boss", "ADMIN_PASSWORD_FILE": filepath.Join(t.TempDir(), "missing"),
	}
	out, err := runCmd(t, e, "serve", "-migrate")
	if err == nil || !strings.Contains(err.Error(), "migrate before serving") {
		t.Fatalf("serve -migrate without the admin password = %v; want an error saying the migration before serving failed\n%s", err, out)
	}
	if strings.Contains(out, `"msg":"serving"`) {
		t.Errorf("serve -migrate listened although its migration failed:\n%s", out)
	}

	e["ADMIN_PASSWORD_FILE"] = writeFile(t, "admin_password", "first-pass\n")
	ctx, cancel := context.WithCancel(context.Background())
	var log syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"polls", "serve", "-migrate"}, env(e), &log) }()
	deadline := time.Now().Add(10 * time.Second)
	for run(ctx, []string{"polls", "healthcheck"}, env(e), &syncBuffer{}) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("serve -migrate never became ready; log:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve -migrate returned %v after cancel; want nil", err)
	}
	assertLogLines(t, log.String(), "acme", "first-pass")
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Authenticate(context.Background(), "boss", "first-pass"); err != nil {
		t.Errorf("after serve -migrate, boss cannot log in: %v", err)
	}
}

func TestHealthcheck(t *testing.T) {
	// Ensures healthcheck GETs the chosen path on LISTEN_ADDR's port and
	// fails unless it answers 2xx.
	var mu sync.Mutex
	var paths []string
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		paths = append(paths, r.URL.Path)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	e := map[string]string{"LISTEN_ADDR": ":" + port}

	if _, err := runCmd(t, e, "healthcheck"); err != nil {
		t.Errorf("healthcheck against a 200 server: %v", err)
	}
	if _, err := runCmd(t, e, "healthcheck", "-path", "/healthz"); err != nil {
		t.Errorf("healthcheck -path /healthz: %v", err)
	}
	mu.Lock()
	status = http.StatusServiceUnavailable
	mu.Unlock()
	if _, err := runCmd(t, e, "healthcheck"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("healthcheck against a 503 server = %v; want an error naming 503", err)
	}
	mu.Lock()
	if got := strings.Join(paths, " "); got != "/readyz /healthz /readyz" {
		t.Errorf("paths requested = %q; want \"/readyz /healthz /readyz\"", got)
	}
	mu.Unlock()
	srv.Close()
	if _, err := runCmd(t, e, "healthcheck"); err == nil {
		t.Error("healthcheck with no server succeeded; want an error")
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// pwOf returns the password in a postgres:// URL.
func pwOf(url string) string {
	at := strings.LastIndex(url, "@")
	colon := strings.LastIndex(url[:at], ":")
	return url[colon+1 : at]
}

// TestVersioned ensures every response names the release that served it.
func TestVersioned(t *testing.T) {
	rec := httptest.NewRecorder()
	versioned(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if got := rec.Header().Get("X-Polls-Version"); got != version {
		t.Errorf("X-Polls-Version = %q; want %q", got, version)
	}
}
