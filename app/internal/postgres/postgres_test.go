package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/polls-tenants/polls/app/internal/polls"
	"github.com/polls-tenants/polls/app/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// openDB opens a new database called name on the shared test server.
func openDB(t *testing.T, name string) *DB {
	t.Helper()
	url := pgtest.Shared(t).CreateDatabase(t, name)
	db, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// migratedDB opens a new database called name with the latest schema.
func migratedDB(t *testing.T, name string) *DB {
	t.Helper()
	db := openDB(t, name)
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

// mustPoll creates a poll with the given choices and returns it.
func mustPoll(t *testing.T, db *DB, question string, choices ...string) polls.Poll {
	t.Helper()
	ctx := context.Background()
	id, err := db.CreatePoll(ctx, question)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range choices {
		if _, err := db.AddChoice(ctx, id, c); err != nil {
			t.Fatal(err)
		}
	}
	p, err := db.Poll(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDescribeHidesPassword(t *testing.T) {
	// Ensures the loggable form of a database URL never holds the password.
	got := Describe("postgres://app:s3cret@db.internal:5433/tenant_a?sslmode=disable")
	if want := "app@db.internal:5433/tenant_a"; got != want {
		t.Errorf("Describe() = %q; want %q", got, want)
	}
	if got := Describe("::not a url::"); got != "(unparseable)" {
		t.Errorf("Describe(garbage) = %q; want (unparseable)", got)
	}
}

// Ensures a database that cannot be reached fails a query with an error
// Unavailable reports, also when its address does not answer within the
// URL's connect_timeout, and that one that refuses the credentials or has
// no such database is Refused, not Unavailable.
func TestUnreachableIsUnavailable(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct{ what, url string }{
		{"refused", "postgres://app:pw@" + closed + "/app?sslmode=disable"},
		{"unanswered", "postgres://app:pw@" + silentAddr(t) + "/app?sslmode=disable&connect_timeout=2"},
		{"unknown host", "postgres://app:pw@polls-no-such-db.invalid:5432/app?sslmode=disable"},
	} {
		db, err := Open(ctx, tc.url)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err = db.ListPolls(qctx)
		cancel()
		took := time.Since(start)
		db.Close()
		if !Unavailable(err) {
			t.Errorf("%s: ListPolls = %v; want an error Unavailable reports", tc.what, err)
		}
		if Refused(err) {
			t.Errorf("%s: Refused(%v) = true; nothing answered to refuse", tc.what, err)
		}
		if took > 10*time.Second {
			t.Errorf("%s: ListPolls failed after %s; want within its connect_timeout (2 s)", tc.what, took.Round(time.Millisecond))
		}
	}

	url := pgtest.Shared(t).CreateDatabase(t, "unavailable_auth")
	db, err := Open(ctx, strings.Replace(url, "@", "x@", 1)) // a wrong password
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ListPolls(ctx); err == nil || Unavailable(err) || !Refused(err) {
		t.Errorf("wrong password: ListPolls = %v; want an error Refused reports and Unavailable does not", err)
	}
	nodb, err := Open(ctx, strings.Replace(url, "/unavailable_auth", "/polls_no_such_db", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer nodb.Close()
	if err := nodb.Ping(ctx); err == nil || !Refused(err) {
		t.Errorf("no such database: Ping = %v; want an error Refused reports", err)
	}
}

// silentAddr returns the address of a listener whose accept queue is full,
// so a new connection's SYN goes unanswered, as to a host cut off.
func silentAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Never accepted: the queue (backlog 0 holds one) fills, and later
	// SYNs are dropped.
	for range 3 {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return addr
}

func TestCRUD(t *testing.T) {
	// Ensures polls and choices can be created, read, edited and deleted,
	// and that missing rows are reported as polls.ErrNotFound.
	ctx := context.Background()
	db := migratedDB(t, "crud")
	p := mustPoll(t, db, "Tabs or spaces?", "Tabs", "Spaces")
	if len(p.Choices) != 2 || p.Choices[0].Text != "Tabs" {
		t.Fatalf("Poll() choices = %+v; want Tabs, Spaces", p.Choices)
	}
	if err := db.UpdatePoll(ctx, p.ID, "Tabs or spaces, really?"); err != nil {
		t.Fatal(err)
	}
	if err := db.UpdateChoice(ctx, p.ID, p.Choices[1].ID, "Four spaces"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteChoice(ctx, p.ID, p.Choices[0].ID); err != nil {
		t.Fatal(err)
	}
	got, err := db.Poll(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Question != "Tabs or spaces, really?" || len(got.Choices) != 1 || got.Choices[0].Text != "Four spaces" {
		t.Errorf("after edits Poll() = %+v", got)
	}
	list, err := db.ListPolls(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListPolls() = %v, %v; want one poll", list, err)
	}
	if err := db.DeletePoll(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Poll":         func() error { _, err := db.Poll(ctx, p.ID); return err }(),
		"DeletePoll":   db.DeletePoll(ctx, p.ID),
		"UpdatePoll":   db.UpdatePoll(ctx, p.ID, "x"),
		"AddChoice":    func() error { _, err := db.AddChoice(ctx, p.ID, "x"); return err }(),
		"Vote":         db.Vote(ctx, p.ID, p.Choices[1].ID),
		"UpdateChoice": db.UpdateChoice(ctx, p.ID, p.Choices[1].ID, "x"),
	} {
		if !errors.Is(err, polls.ErrNotFound) {
			t.Errorf("%s on a deleted poll = %v; want polls.ErrNotFound", name, err)
		}
	}
}

func TestVoteNeedsMatchingPoll(t *testing.T) {
	// Ensures a choice can only be voted for through its own poll.
	ctx := context.Background()
	db := migratedDB(t, "vote_match")
	a := mustPoll(t, db, "A?", "a1")
	b := mustPoll(t, db, "B?", "b1")
	if err := db.Vote(ctx, b.ID, a.Choices[0].ID); !errors.Is(err, polls.ErrNotFound) {
		t.Errorf("Vote(poll b, choice of a) = %v; want polls.ErrNotFound", err)
	}
}

func TestConcurrentVotesAllCount(t *testing.T) {
	// Ensures 200 simultaneous votes on one choice are all counted.
	ctx := context.Background()
	db := migratedDB(t, "votes")
	p := mustPoll(t, db, "Best editor?", "vi", "emacs")
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			errs <- db.Vote(ctx, p.ID, p.Choices[0].ID)
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.Poll(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Choices[0].Votes != n || got.Choices[1].Votes != 0 {
		t.Errorf("votes = %d, %d; want %d, 0", got.Choices[0].Votes, got.Choices[1].Votes, n)
	}
}

func TestTenantsStaySeparate(t *testing.T) {
	// Ensures polls created and votes cast in one tenant's database do not
	// appear in another's.
	ctx := context.Background()
	a := migratedDB(t, "tenant_a")
	b := migratedDB(t, "tenant_b")
	pa := mustPoll(t, a, "Only in A?", "yes")
	if err := a.Vote(ctx, pa.ID, pa.Choices[0].ID); err != nil {
		t.Fatal(err)
	}
	list, err := b.ListPolls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("tenant b lists %+v; want no polls", list)
	}
	if _, err := b.Poll(ctx, pa.ID); !errors.Is(err, polls.ErrNotFound) {
		t.Errorf("tenant b Poll(%d) = %v; want polls.ErrNotFound", pa.ID, err)
	}
	pb := mustPoll(t, b, "Only in B?", "no")
	if got, _ := a.ListPolls(ctx); len(got) != 1 || got[0].ID != pa.ID {
		t.Errorf("tenant a lists %+v; want only its own poll %d", got, pa.ID)
	}
	if got, _ := b.Poll(ctx, pb.ID); got.Choices[0].Votes != 0 {
		t.Errorf("tenant b choice has %d votes; want 0", got.Choices[0].Votes)
	}
}

func TestEnsureUser(t *testing.T) {
	// Ensures createsuperuser's step creates the user once, is a no-op when
	// repeated, and a rotated password replaces the old one and ends sessions.
	// Only a new user or a new password is hashed: a repeated run (every
	// start of an app that migrates) compares and hashes nothing.
	ctx := context.Background()
	db := migratedDB(t, "users")
	hashes := 0
	hash := hashPassword
	hashPassword = func(p string) ([]byte, error) { hashes++; return hash(p) }
	t.Cleanup(func() { hashPassword = hash })
	for i, want := range []bool{true, false, false} {
		changed, err := db.EnsureUser(ctx, "admin", "first")
		if err != nil || changed != want {
			t.Fatalf("EnsureUser run %d = %v, %v; want %v, nil", i+1, changed, err, want)
		}
	}
	if hashes != 1 {
		t.Errorf("three runs with one password hashed it %d times; want 1", hashes)
	}
	u, err := db.Authenticate(ctx, "admin", "first")
	if err != nil {
		t.Fatal(err)
	}
	token, err := db.CreateSession(ctx, u.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := db.SessionUser(ctx, token); err != nil || got != u {
		t.Fatalf("SessionUser() = %+v, %v; want %+v", got, err, u)
	}

	if changed, err := db.EnsureUser(ctx, "admin", "second"); err != nil || !changed {
		t.Fatalf("EnsureUser with a new password = %v, %v; want true, nil", changed, err)
	}
	if hashes != 2 {
		t.Errorf("a new password made %d hashes in all; want 2", hashes)
	}
	if _, err := db.Authenticate(ctx, "admin", "first"); !errors.Is(err, polls.ErrBadLogin) {
		t.Errorf("old password: Authenticate() = %v; want ErrBadLogin", err)
	}
	if _, err := db.Authenticate(ctx, "admin", "second"); err != nil {
		t.Errorf("new password: Authenticate() = %v; want nil", err)
	}
	if _, err := db.SessionUser(ctx, token); !errors.Is(err, polls.ErrNotFound) {
		t.Errorf("session after rotation: %v; want polls.ErrNotFound", err)
	}
	if _, err := db.Authenticate(ctx, "nobody", "second"); !errors.Is(err, polls.ErrBadLogin) {
		t.Errorf("unknown user: Authenticate() = %v; want ErrBadLogin", err)
	}
	var n int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 1 {
		t.Errorf("users = %d, %v; want 1", n, err)
	}
}

func TestDummyHashCost(t *testing.T) {
	// Ensures an unknown username costs a login what a known one does: the
	// written-out hash it is compared against has the cost new hashes get.
	cost, err := bcrypt.Cost([]byte(dummyHash))
	if err != nil || cost != bcrypt.DefaultCost {
		t.Errorf("dummyHash's cost = %d, %v; want %d (bcrypt.DefaultCost)", cost, err, bcrypt.DefaultCost)
	}
}

func TestSessions(t *testing.T) {
	// Ensures sessions expire and can be ended.
	ctx := context.Background()
	db := migratedDB(t, "sessions")
	if _, err := db.EnsureUser(ctx, "admin", "pw"); err != nil {
		t.Fatal(err)
	}
	u, err := db.Authenticate(ctx, "admin", "pw")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := db.CreateSession(ctx, u.ID, -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SessionUser(ctx, expired); !errors.Is(err, polls.ErrNotFound) {
		t.Errorf("expired session: %v; want polls.ErrNotFound", err)
	}
	live, err := db.CreateSession(ctx, u.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteSession(ctx, live); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SessionUser(ctx, live); !errors.Is(err, polls.ErrNotFound) {
		t.Errorf("deleted session: %v; want polls.ErrNotFound", err)
	}
}
