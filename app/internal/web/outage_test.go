package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/polls-tenants/polls/app/internal/polls"
)

var errUnreachable = errors.New("unreachable")

// flakyStore is a Store whose database is reachable or not, counting the
// pages that asked it.
type flakyStore struct {
	Store
	mu    sync.Mutex
	err   error
	asked int
}

func (f *flakyStore) set(err error) { f.mu.Lock(); f.err = err; f.mu.Unlock() }

func (f *flakyStore) ListPolls(context.Context) ([]polls.Poll, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	return nil, f.err
}

func (f *flakyStore) Ready(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func TestOutageFailsFast(t *testing.T) {
	// Ensures that once the database has not been reached for outageAfter,
	// pages are answered 503 without asking it; that they ask it again as
	// soon as a probe reaches it; and that other errors never start an
	// outage.
	defer func(a, p time.Duration) { outageAfter, probeEvery = a, p }(outageAfter, probeEvery)
	outageAfter, probeEvery = 300*time.Millisecond, 20*time.Millisecond
	store := &flakyStore{}
	h := New(Options{Tenant: tenant, AllowedHosts: []string{host}, Store: store,
		Unavailable: func(err error) bool { return errors.Is(err, errUnreachable) }})
	get := func() (int, int) {
		req := httptest.NewRequest(http.MethodGet, "http://"+host+"/", nil)
		res := serve(h, req)
		store.mu.Lock()
		defer store.mu.Unlock()
		return res.StatusCode, store.asked
	}

	store.set(errUnreachable)
	if code, asked := get(); code != http.StatusServiceUnavailable || asked != 1 {
		t.Fatalf("database unreachable: GET / = %d after asking it %d times; want 503 after asking once", code, asked)
	}
	time.Sleep(outageAfter + 50*time.Millisecond)
	if code, asked := get(); code != http.StatusServiceUnavailable || asked != 1 {
		t.Errorf("database unreachable for %s: GET / = %d, database asked %d times; want 503 without asking it (still 1)", outageAfter, code, asked)
	}

	store.set(nil)
	deadline := time.Now().Add(2 * time.Second)
	for {
		code, _ := get()
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("database reachable again: GET / = %d after 2 s; want 200 once a probe reached it", code)
		}
		time.Sleep(10 * time.Millisecond)
	}

	store.set(errors.New("syntax error"))
	get()
	time.Sleep(outageAfter + 50*time.Millisecond)
	_, before := get()
	if code, asked := get(); code != http.StatusInternalServerError || asked != before+1 {
		t.Errorf("database failing, not unreachable: GET / = %d, asked %d times (from %d); want 500, asking it", code, asked, before)
	}
}
