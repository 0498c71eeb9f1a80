// Package platform holds what every platform (package onehost for one
// Docker engine, package swarm for a Swarm cluster) realises the same way:
// the replacement options of named and generated resources, the gate that
// waits for a part to come up, and the migration, a container that runs to
// completion on the engine the program talks to.
//
// A platform is a package that implements tenants.Platform with its own
// kind of resources; what it does not need to do differently, it takes from
// here, never from another platform.
package platform

import (
	"context"
	"fmt"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/spec"
)

// Named is for resources with a fixed Docker name: Docker refuses two
// containers, services or networks of one name, so a replacement must
// delete the old one first (the engine creates first otherwise, e.g. for
// `--replace`).
var Named = pulumi.DeleteBeforeReplace(true)

// CreateFirst is for resources with generated names, replaced with the new
// one created before the old one is deleted. It must be said: the docker
// provider asks for delete-first replacement of every container, and Pulumi
// then also replaces delete-first everything that depends on it.
var CreateFirst = pulumi.DeleteBeforeReplace(false)

// PerNewTenant is what StartWait adds for each tenant the update deploys
// for the first time.
const PerNewTenant = 3 * time.Second

// StartWait is how long a tenant's database or app may take to become
// healthy before `pulumi up` fails for its tenant: base, plus PerNewTenant
// for each of the newTenants this update deploys for the first time.
//
// base is ample for one container. But every new tenant's database
// initialises its data directory at its first start, a few CPU-seconds,
// and an update that deploys many tenants (a cold up of 100) starts them
// all at once: sharing the host's cores, each is done only when most of
// them are. In `make bench-compose` at N=100 on the project's 2-core host,
// a cold up failed three times on one database not healthy within its 3
// minutes, each healthy moments later. A container that exits, restarts or
// is marked unhealthy still fails at once (dockerapi.Wait); only a slow
// start is given longer.
func StartWait(base time.Duration, newTenants int) time.Duration {
	return base + time.Duration(newTenants)*PerNewTenant
}

// NewTenants counts the stack's tenants that are not in existing: those
// this update deploys for the first time.
func NewTenants(s spec.Stack, existing map[string]bool) int {
	n := 0
	for _, t := range s.Tenants {
		if !existing[t.Name] {
			n++
		}
	}
	return n
}

// Gate resolves to value once wait says the part is up, and fails with what
// (the tenant and part) and wait's reason otherwise. wait gets the values
// of on (the part's ID, say) once they are known. In a preview nothing is
// waited for. The value is constant, so gating on it never changes a
// dependent's inputs by itself.
func Gate(ctx *pulumi.Context, what string, wait func(ctx context.Context, on []any) error, value string, on ...any) pulumi.StringOutput {
	return pulumi.All(on...).ApplyTWithContext(ctx.Context(), func(wctx context.Context, v []any) (string, error) {
		if ctx.DryRun() {
			return value, nil
		}
		if err := wait(wctx, v); err != nil {
			return "", fmt.Errorf("%s %w", what, err)
		}
		return value, nil
	}).(pulumi.StringOutput)
}

// Memory returns a container memory limit in MiB, or no limit for 0. Used
// for MemorySwap too: memory+swap equal to memory means no swap, and left
// unset Docker would pick twice the memory, which then shows as a diff on
// every preview.
func Memory(mb int) pulumi.IntPtrInput {
	if mb == 0 {
		return nil
	}
	return pulumi.Int(mb)
}
