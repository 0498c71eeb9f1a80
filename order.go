package main

import (
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/spec"
)

// holdAtMost bounds how long the tenants deployed before are held back
// while new ones deploy (newFirst). A new tenant that takes longer, or
// fails where the program does not see it (a resource the provider cannot
// create), holds them back this long at most.
var holdAtMost = 60 * time.Second

// newFirst puts the tenants an update deploys for the first time ahead of
// the tenants deployed before.
//
// The Pulumi engine takes one resource registration at a time, in the order
// they arrive, and asks the provider to check and diff each before the
// next: about 30 ms a resource here, 25 s for the ~800 of 100 tenants. A
// new tenant's app is registered only once its database is healthy, so it
// joined the queue behind every other tenant's unchanged resources, and
// adding the 101st tenant took 35.7 s until it served. Held back, the
// others' registrations arrive once the new tenants are live, serving
// with the router's config installed (or holdAtMost has passed), and go
// through the queue while the new tenants already serve. The update as a
// whole takes as long as before; its resources, inputs and dependencies
// are the same (the hold carries no resource), so a preview shows nothing
// of it.
//
// There is nothing to order in a preview (nothing is waited for), a cold
// up (every tenant is new) or an update that adds no tenant: newFirst is
// then nil, and so is its Hold.
type newFirst struct {
	hold     pulumi.ResourceArrayOutput
	release  func()
	released chan struct{}
	// fresh are the tenants the update deploys for the first time.
	fresh []string
}

// newNewFirst returns the ordering for an update that deploys tenants,
// existing saying which were deployed before; nil when there is nothing
// to order.
func newNewFirst(ctx *pulumi.Context, tenants []spec.Tenant, existing func(string) bool) *newFirst {
	if ctx.DryRun() {
		return nil
	}
	var fresh []string
	for _, t := range tenants {
		if !existing(t.Name) {
			fresh = append(fresh, t.Name)
		}
	}
	if len(fresh) == 0 || len(fresh) == len(tenants) {
		return nil
	}
	released := make(chan struct{})
	var once sync.Once
	f := &newFirst{release: func() { once.Do(func() { close(released) }) }, released: released, fresh: fresh}
	f.hold = pulumi.ResourceArray{}.ToResourceArrayOutput().ApplyT(func(r []pulumi.Resource) []pulumi.Resource {
		<-released
		return r
	}).(pulumi.ResourceArrayOutput)
	time.AfterFunc(holdAtMost, f.release)
	return f
}

// Hold is what a tenant waits on before its resources are registered: the
// release for a tenant deployed before, nothing for a new one.
func (f *newFirst) Hold(existing bool) pulumi.ResourceArrayInput {
	if f == nil || !existing {
		return nil
	}
	return f.hold
}

// Released is closed once the held tenants go: at once when nothing is
// held.
func (f *newFirst) Released() <-chan struct{} {
	if f == nil {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	return f.released
}

// ReleaseWhen lets the held tenants go once the new tenants' outputs in
// live (their routes, by tenant) have resolved.
func (f *newFirst) ReleaseWhen(live map[string]pulumi.StringOutput) {
	if f == nil {
		return
	}
	all := make([]any, len(f.fresh))
	for i, t := range f.fresh {
		all[i] = live[t]
	}
	pulumi.All(all...).ApplyT(func([]any) string {
		f.release()
		return ""
	})
}
