package e2e

import (
	"sync"
	"testing"
	"time"
)

// The end-to-end tests share the host's Docker engine in two lanes: the
// one-host tests (TestACME, TestEndToEnd), one at a time, beside TestSwarm
// (`go test -parallel 3`, as `make test` runs them). Each test checks only
// what its own stack made, on ports picked free; two things are shared and
// guarded here.
var (
	// subnetPool is held by a one-host test for its whole run: both plan
	// tenant subnets from polls:subnetPool's default pool. Swarm's
	// overlays take the cluster's address pool instead.
	subnetPool sync.Mutex
	// swarmMode is held for reading by a one-host test while it runs, and
	// for writing by TestSwarm while the engine leaves the Swarm. A
	// `docker swarm leave --force` under a running one-host stack once cut
	// a migration off its database for 30 s (README, "Tests"). TestSwarm
	// joins the Swarm before the parallel tests start (startCluster runs
	// before its t.Parallel), so only the leave needs the lock.
	swarmMode sync.RWMutex
)

// oneHostLane runs t in the one-host lane: in parallel with TestSwarm, after
// the other one-host test.
func oneHostLane(t *testing.T) {
	t.Parallel()
	start := time.Now()
	subnetPool.Lock()
	swarmMode.RLock()
	if waited := time.Since(start); waited > time.Second {
		t.Logf("started after %s in the one-host lane", waited.Round(time.Second))
	}
	// Cleanups run last registered first: these run after the test's own,
	// its destroy included.
	t.Cleanup(subnetPool.Unlock)
	t.Cleanup(swarmMode.RUnlock)
}

// leaveSwarm runs leave once no one-host test is running, and says how long
// it waited.
func leaveSwarm(t *testing.T, leave func()) {
	start := time.Now()
	swarmMode.Lock()
	defer swarmMode.Unlock()
	if waited := time.Since(start); waited > time.Second {
		t.Logf("waited %s for the one-host lane before leaving the Swarm", waited.Round(time.Second))
	}
	leave()
}
