// Package pgtest runs a throwaway PostgreSQL server for tests, from the
// server binaries of Debian's postgresql package.
//
// A test package shares one server between its tests:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		url := pgtest.Shared(t).CreateDatabase(t, "x")
//		…
//	}
//
// Start gives a test a server of its own instead. Tests run as root (as in
// CI) work too: PostgreSQL refuses to run as root, so the server then runs
// as the postgres system user, or nobody.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// binGlob is where Debian installs the server binaries of each major version.
const binGlob = "/usr/lib/postgresql/*/bin"

// ErrNoBinaries is returned by New when no PostgreSQL server is installed.
var ErrNoBinaries = errors.New("PostgreSQL server binaries not found under " + binGlob + ": apt-get install postgresql")

// Server is a running PostgreSQL server that accepts password logins on
// 127.0.0.1 and trusts its superuser on its private unix socket.
type Server struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// SocketDir is the directory holding the unix socket.
	SocketDir string

	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// Start starts a server for tb alone and stops it when tb ends. It skips
// tb when PostgreSQL is not installed.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := New()
	if errors.Is(err, ErrNoBinaries) {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the server of this test binary, starting it on first
// use. Main stops it after the tests. It skips tb when PostgreSQL is not
// installed.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.once.Do(func() { shared.srv, shared.err = New() })
	if errors.Is(shared.err, ErrNoBinaries) {
		tb.Skip(shared.err)
	}
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.srv
}

// Main runs the tests of m and then stops the Shared server, if one was
// started. It returns the exit code for os.Exit.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// New initializes a data directory in a new temporary directory and
// starts a server on a free loopback port. Stop stops it and removes the
// directory.
func New() (*Server, error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	cred, owner, err := runAs()
	if err != nil {
		return nil, err
	}
	// Not under a long TMPDIR: a unix socket path has at most 107 bytes.
	dir, err := os.MkdirTemp(shortTempDir(), "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{dir: dir, SocketDir: filepath.Join(dir, "sock")}
	if err := s.init(bin, cred, owner); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A port found free may be taken before the server binds it; try again.
	for attempt := 0; ; attempt++ {
		err = s.start(bin, cred)
		if err == nil || attempt == 2 {
			break
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) init(bin string, cred *syscall.Credential, owner *user.User) error {
	for _, d := range []string{s.dir, s.SocketDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		if owner != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return fmt.Errorf("pgtest: give %s to %s: %w", d, owner.Username, err)
			}
		}
	}
	cmd := exec.Command(filepath.Join(bin, "initdb"),
		"-D", filepath.Join(s.dir, "data"), "-U", "postgres", "-E", "UTF8", "--no-locale",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	return nil
}

func (s *Server) start(bin string, cred *syscall.Credential) error {
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("pgtest: find a free port: %w", err)
	}
	logPath := filepath.Join(s.dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"),
		"-D", filepath.Join(s.dir, "data"),
		"-p", strconv.Itoa(port),
		"-k", s.SocketDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "max_connections=200",
		// Durability is worthless for a throwaway server; speed is not.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig stops the server if the test binary dies without Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.Port, s.cmd, s.log, s.done = port, cmd, logf, make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.SuperuserURL("postgres"))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-s.done:
			logf.Close()
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("pgtest: postgres exited while starting:\n%s", out)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-s.done
			logf.Close()
			return fmt.Errorf("pgtest: postgres did not accept connections within 60s: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop shuts the server down fast and removes its directory.
func (s *Server) Stop() error {
	if s.cmd != nil && s.cmd.Process != nil {
		// SIGINT is PostgreSQL's "fast" shutdown: it ends open sessions.
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		s.log.Close()
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("pgtest: remove %s: %w", s.dir, err)
	}
	return nil
}

// SuperuserURL returns a connection string for the postgres superuser to
// database dbname, over the unix socket.
func (s *Server) SuperuserURL(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", s.SocketDir, s.Port, dbname)
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CreateDatabase creates database name owned by a new role of the same
// name with a random password, and returns its postgres:// URL on
// 127.0.0.1. Both are dropped when tb ends. name must be a lower-case SQL
// identifier, unique on the server.
func (s *Server) CreateDatabase(tb testing.TB, name string) string {
	tb.Helper()
	if !identRE.MatchString(name) {
		tb.Fatalf("pgtest: database name %q is not a lower-case identifier", name)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.SuperuserURL("postgres"))
	if err != nil {
		tb.Fatalf("pgtest: connect as superuser: %v", err)
	}
	defer conn.Close(ctx)
	pw := randomHex(16)
	for _, q := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", name, pw),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", name, name),
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			tb.Fatalf("pgtest: create database %s: %v", name, err)
		}
	}
	tb.Cleanup(func() {
		conn, err := pgx.Connect(ctx, s.SuperuserURL("postgres"))
		if err != nil {
			tb.Errorf("pgtest: connect as superuser: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, q := range []string{"DROP DATABASE " + name + " WITH (FORCE)", "DROP ROLE " + name} {
			if _, err := conn.Exec(ctx, q); err != nil {
				tb.Errorf("pgtest: drop database %s: %v", name, err)
			}
		}
	})
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(name, pw),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)),
		Path:     "/" + name,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// findBinDir returns the bin directory of the newest installed major version.
func findBinDir() (string, error) {
	dirs, _ := filepath.Glob(binGlob)
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// runAs returns the credentials to run PostgreSQL with: none when not
// root, else those of the postgres user, or nobody.
func runAs() (*syscall.Credential, *user.User, error) {
	if os.Geteuid() != 0 {
		return nil, nil, nil
	}
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			errs = append(errs, fmt.Errorf("user %s has a non-numeric uid or gid", name))
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, u, nil
	}
	return nil, nil, fmt.Errorf("pgtest: running as root, and no user to run PostgreSQL as: %w", errors.Join(errs...))
}

func shortTempDir() string {
	if d := os.TempDir(); len(d) <= 40 {
		return d
	}
	return "/tmp"
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
