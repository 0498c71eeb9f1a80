// Package onehost realises tenants (package tenants) as containers on one
// Docker engine: per tenant an internal bridge network with a subnet from
// the stack's pool, a PostgreSQL container with its volume, a migration
// container that runs to completion and the app container.
//
// The app and migration containers have generated names and are replaced
// create-first: a new version starts beside the old one, takes the name the
// tenant's route sends requests to once it is healthy, and only then is the
// old one stopped (App, Retire).
package onehost

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/ports"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/tenants"
)

// Engine is what the platform asks the Docker engine itself (package
// dockerapi implements it).
type Engine interface {
	// Networks lists the engine's networks, to plan tenant subnets.
	Networks(ctx context.Context) ([]dockerapi.Network, error)
	// Wait returns once container id is healthy, and fails at once when it
	// exits or turns unhealthy, or after within.
	Wait(ctx context.Context, id string, within time.Duration) error
	// Containers lists the containers carrying every label given.
	Containers(ctx context.Context, labels map[string]string) ([]dockerapi.ContainerSummary, error)
	// Connect attaches container id to network under alias, and reports
	// false when it holds that alias there already.
	Connect(ctx context.Context, network, id, alias string) (bool, error)
	// StopContainer stops container id, giving it grace seconds.
	StopContainer(ctx context.Context, id string, grace int) error
}

// Platform realises tenants on one Docker engine.
type Platform struct {
	// Engine watches containers come up.
	Engine Engine
	// Edge is the name of the network the router and every app share; set
	// by Declare.
	Edge pulumi.StringOutput
	// Subnets and Gateways are each tenant's private network addresses, as
	// planned by package subnets.
	Subnets  map[string]netip.Prefix
	Gateways map[string]netip.Addr
	// Ports are the ports the tenants' apps listen on, as planned by
	// package ports.
	Ports map[string]int

	prefix   string
	existing map[string]bool
	// legacy holds the tenants whose network lacks contract.LabelSecrets:
	// deployed by a version that generated their passwords as resources.
	legacy map[string]bool
	// dbWithin and appWithin bound the wait for a tenant's database and app
	// (platform.StartWait).
	dbWithin, appWithin time.Duration
	// restored maps each tenant to its database's polls.restore label.
	restored map[string]string
	// apps maps each tenant to its app container's ID (set by App).
	apps map[string]pulumi.StringOutput
}

// New plans the stack on the engine: every tenant's subnet and app port.
// It registers nothing, so a plan that fails changes nothing.
func New(ctx context.Context, engine Engine, s spec.Stack, prefix string) (*Platform, error) {
	subnets, gateways, networks, err := planSubnets(ctx, engine, s, prefix)
	if err != nil {
		return nil, err
	}
	existing, legacy := map[string]bool{}, map[string]bool{}
	for t, labels := range networks {
		existing[t] = true
		legacy[t] = labels[contract.LabelSecrets] == ""
	}
	appPorts, err := planPorts(ctx, engine, s, prefix)
	if err != nil {
		return nil, err
	}
	p := &Platform{Engine: engine, Subnets: subnets, Gateways: gateways, Ports: appPorts, prefix: prefix, existing: existing, legacy: legacy, restored: map[string]string{}}
	fresh := platform.NewTenants(s, existing)
	p.dbWithin, p.appWithin = platform.StartWait(dbWait, fresh), platform.StartWait(appWait, fresh)
	if s.Backup != nil {
		dbs, err := engine.Containers(ctx, map[string]string{contract.LabelStack: prefix, contract.LabelRole: "db"})
		if err != nil {
			return nil, fmt.Errorf("list the databases to see which restores they applied: %w", err)
		}
		for _, d := range dbs {
			p.restored[d.Labels[contract.LabelTenant]] = d.Labels["polls.restore"]
		}
	}
	return p, nil
}

// planPorts gives every tenant's app its port (package ports): the one its
// running app holds, or the lowest free one.
func planPorts(ctx context.Context, engine Engine, s spec.Stack, prefix string) (map[string]int, error) {
	apps, err := engine.Containers(ctx, map[string]string{contract.LabelStack: prefix, contract.LabelRole: "app"})
	if err != nil {
		return nil, fmt.Errorf("list the apps to keep each tenant's port: %w", err)
	}
	labels := make([]map[string]string, len(apps))
	for i, a := range apps {
		labels[i] = a.Labels
	}
	names := make([]string, len(s.Tenants))
	for i, t := range s.Tenants {
		names[i] = t.Name
	}
	plan, err := ports.Plan(names, ports.Held(labels))
	if err != nil {
		return nil, fmt.Errorf("invalid stack config (nothing was changed):\n%w", err)
	}
	return plan, nil
}

// AppPort is the port the tenant's app listens on: its own on the shared
// edge network (package ports).
func (p *Platform) AppPort(tenant string) int { return p.Ports[tenant] }

// Moves reports false: on one engine a database never moves.
func (p *Platform) Moves(string) bool { return false }

// AppliedRestore is the restore the tenant's database container was
// created for, or "".
func (p *Platform) AppliedRestore(tenant string) string { return p.restored[tenant] }

// Existing reports whether the tenant's network was on the engine before
// this update: the tenant was deployed.
func (p *Platform) Existing(tenant string) bool { return p.existing[tenant] }

// LegacyPasswords reports whether the tenant's network was on the engine
// without contract.LabelSecrets: an earlier version deployed the tenant,
// with its passwords as random.RandomPassword resources.
func (p *Platform) LegacyPasswords(tenant string) bool { return p.legacy[tenant] }

// Declare registers what the tenants share: the edge network the router
// and every app meet on. Databases are never on it.
func (p *Platform) Declare(ctx *pulumi.Context, opts ...pulumi.ResourceOption) error {
	edge, err := docker.NewNetwork(ctx, "edge", &docker.NetworkArgs{Name: pulumi.String(p.prefix + "-edge")}, append(opts, platform.Named)...)
	if err != nil {
		return fmt.Errorf("edge network: %w", err)
	}
	p.Edge = edge.Name
	return nil
}

// EdgeNetwork is the name of the network the router and every app share.
func (p *Platform) EdgeNetwork() pulumi.StringOutput { return p.Edge }

// RemoteApps is false: the apps run on the router's own engine, and one
// that ends closes its connections.
func (p *Platform) RemoteApps() bool { return false }

var _ tenants.Platform = (*Platform)(nil)

// How long a container may take to become healthy before `pulumi up`
// fails for its tenant, with no other tenant new (platform.StartWait). A
// database's first start initialises its data directory; the app starts in
// a second or two.
const (
	dbWait  = 3 * time.Minute
	appWait = 2 * time.Minute
)

// The engine's health checks of a running app or database: every
// checkEvery, and unhealthy after checkRetries failures in a row (about
// 6 min for a container that hangs while it runs).
//
// Each check is a process the engine starts in the container, 0.1 to 0.4
// CPU-seconds of dockerd, containerd and runc on this project's host
// whatever the check itself does. At 30 s, 100 idle tenants kept about
// 0.9 of its 2 cores busy, and every `pulumi up` and release at that size
// ran on what was left (README, "Hundreds of tenants on one host"). Nothing
// waits for this interval: `pulumi up` runs the check itself while a
// container starts (dockerapi.Wait) and fails on one that does not pass; a
// container that exits is restarted and counted at once
// (polls_restarts_total); with polls:monitoring, a tenant whose requests
// fail is alerted on from the router's figures within a minute. The
// interval only bounds how soon a container that hangs while it runs is
// marked unhealthy.
const (
	checkEvery   = "2m0s"
	checkRetries = 3
)

// healthy resolves once container c is healthy (see platform.Gate).
func (p *Platform) healthy(ctx *pulumi.Context, what string, c *docker.Container, within time.Duration) pulumi.StringOutput {
	return platform.Gate(ctx, what, func(ctx context.Context, id []any) error {
		return p.Engine.Wait(ctx, fmt.Sprint(id[0]), within)
	}, "healthy", c.ID())
}

// notUpdatedInPlace makes a change of these container arguments replace the
// container: the provider accepts them as in-place updates but applies
// nothing, so the change would exist only in Pulumi's state.
var notUpdatedInPlace = pulumi.ReplaceOnChanges([]string{"init", "healthcheck"})

// wrap names the step of an error.
func wrap(step string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	return nil
}

// Migration runs the tenant's migration as a container that runs to
// completion (platform.Migration). With polls:migrations app it declares
// nothing: the app migrates as it starts (App), so the app waits for the
// database's health alone.
func (p *Platform) Migration(ctx *pulumi.Context, t tenants.Parts, network, dbReady pulumi.StringOutput) (pulumi.StringOutput, error) {
	if platform.MigratesInApp(t) {
		return platform.MigrationInApp(dbReady), nil
	}
	return platform.Migration(ctx, t, network, dbReady)
}

// Backup declares the tenant's backup agent (platform.BackupAgent).
func (p *Platform) Backup(ctx *pulumi.Context, t tenants.Parts, network pulumi.StringOutput) error {
	return platform.BackupAgent(ctx, t, network)
}
