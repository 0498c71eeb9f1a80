package web

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// An outage is a database that has not answered for outageAfter: pages
// are then answered 503 at once, without trying it, and the router passes
// a GET on to another replica. Such a replica is a Swarm task on a node
// that was cut off from the database and is back, which Docker's DNS
// names again for a few seconds before the managers stop it: trying its
// database would hold each request for seconds. A slow database, or a
// host too busy to answer a lookup at once, never gets there: a page waits
// for it as before, and only a failure to reach the database counts.
var (
	outageAfter  = 10 * time.Second
	probeEvery   = time.Second
	probeTimeout = 2 * time.Second
)

// outage follows whether the database answers. It starts on a failure to
// reach it (from a page or from /readyz), and ends as soon as a probe of
// the database, run every probeEvery while it lasts, or /readyz succeeds.
type outage struct {
	ready       func(context.Context) error
	unreachable func(error) bool

	mu      sync.Mutex
	since   time.Time // the first failure with no answer since; zero: answering
	probing bool
}

// failed records err from the database, when it is a failure to reach it.
func (o *outage) failed(err error) {
	if !o.unreachable(err) {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		o.since = time.Now()
	}
	if !o.probing {
		o.probing = true
		go o.probe()
	}
}

// answered records that the database answered.
func (o *outage) answered() {
	o.mu.Lock()
	o.since = time.Time{}
	o.mu.Unlock()
}

// down reports whether the database has not answered for outageAfter.
func (o *outage) down() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.since.IsZero() && time.Since(o.since) >= outageAfter
}

// probe asks the database every probeEvery until it answers.
func (o *outage) probe() {
	for {
		time.Sleep(probeEvery)
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		err := o.ready(ctx)
		cancel()
		o.mu.Lock()
		if err == nil || !o.unreachable(err) {
			o.since = time.Time{}
		}
		if o.since.IsZero() {
			o.probing = false
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
	}
}

// newOutage follows store's database; unavailable tells a failure to reach
// it (nil: no outage is ever declared). A probe that times out counts too.
func newOutage(ready func(context.Context) error, unavailable func(error) bool) *outage {
	return &outage{ready: ready, unreachable: func(err error) bool {
		if unavailable == nil || err == nil {
			return false
		}
		return unavailable(err) || errors.Is(err, context.DeadlineExceeded)
	}}
}

// failFast answers 503 to every page while the database is down; the
// probes still try it.
func (s *server) failFast(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isProbe(r) && s.outage.down() {
			s.unavailable(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
