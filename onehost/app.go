package onehost

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/tenants"
)

// appGrace is how long a stopping app may take to finish requests in flight
// (it drains for 8 s) before it is killed.
const appGrace = 10

// App declares the tenant's app container, on its private network to reach
// its database. Once it is healthy, and only then, it joins the edge
// network under the tenant's app name; it listens on the tenant's own port
// (t.Upstream() is where the tenant's route sends requests). Docker's DNS
// answers that name with every running container holding it, so the router
// shares requests between the old and the new version until Retire stops
// the old one. A version that never turns healthy never holds the name.
// The route itself stays as it is, so a release replaces no route
// installer and reloads no nginx. The port of its own is what keeps a
// stopped app's address, which Docker may hand to another tenant's new app
// while the router still has it cached, from reaching that app (package
// ports).
//
// Its name is generated (<tenant>-app-<random>), not fixed, so a new version
// is created beside the old one: it is replaced create-first, and the old
// one is stopped only once the new one holds the name, with a grace period
// for requests in flight.
//
// With polls:migrations app the container migrates as it starts
// (contract.MigratingAppCommand) and so also holds the admin password and
// the restore labels the migration container would: a restore replaces
// it, and the new version migrates the restored database. A migration
// that fails makes it exit before it serves; the wait below reports that
// with its log, and the old version keeps the name.
func (p *Platform) App(ctx *pulumi.Context, t tenants.Parts, network, migrated pulumi.StringOutput) (pulumi.StringOutput, error) {
	tenant := t.Tenant.Name
	command, env := contract.AppCommand, t.AppEnv()
	uploads := docker.ContainerUploadArray{
		docker.ContainerUploadArgs{File: pulumi.String(contract.DatabaseURLFile), Content: t.Secrets.DatabaseURL},
	}
	var restore []docker.ContainerLabelArgs
	if platform.MigratesInApp(t) {
		command, env = contract.MigratingAppCommand, t.MigratingAppEnv()
		uploads = append(uploads, docker.ContainerUploadArgs{File: pulumi.String(contract.AdminPasswordFile), Content: t.Secrets.AdminPassword})
		restore = platform.ExtraLabels(platform.RestoreLabels(t))
	}
	app, err := docker.NewContainer(ctx, tenant+"-app", &docker.ContainerArgs{
		Image:   t.Image,
		Command: pulumi.ToStringArray(command),
		Envs:    pulumi.ToStringArray(env),
		Uploads: uploads,
		// The edge network is joined once the app is healthy (below), so
		// it is not declared here: the provider never reads a container's
		// networks back, and joining one it declared is refused.
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
			docker.ContainerNetworksAdvancedArgs{Name: network},
		},
		// The program probes the check itself while the app starts (see
		// healthy), so the engine's interval only paces checks afterwards
		// (checkEvery).
		Healthcheck: docker.ContainerHealthcheckArgs{
			Tests:       pulumi.ToStringArray(contract.AppHealthCommand),
			Interval:    pulumi.String(checkEvery),
			Timeout:     pulumi.String("3s"),
			Retries:     pulumi.Int(checkRetries),
			StartPeriod: pulumi.String("30s"),
		},
		// An init reaps health-check processes left behind by a timeout.
		Init:    pulumi.Bool(true),
		Restart: pulumi.String("unless-stopped"),
		// Stop with SIGTERM and wait: the app drains requests in flight
		// (8s), where the provider would otherwise kill it at once.
		DestroyGraceSeconds: pulumi.Int(appGrace),
		Memory:              platform.Memory(t.Stack.AppMemory(t.Tenant)),
		MemorySwap:          platform.Memory(t.Stack.AppMemory(t.Tenant)),
		Labels: platform.ContainerLabels(t, "app", append([]docker.ContainerLabelArgs{
			{Label: pulumi.String(contract.LabelPort), Value: pulumi.String(strconv.Itoa(t.AppPort))},
			{Label: pulumi.String("polls.migration"), Value: migrated}}, restore...)...),
	}, append(t.Opts, platform.CreateFirst, notUpdatedInPlace)...)
	if err != nil {
		return pulumi.StringOutput{}, wrap("container", err)
	}
	alias := t.Name("app")
	if p.apps == nil {
		p.apps = map[string]pulumi.StringOutput{}
	}
	p.apps[tenant] = app.ID().ToStringOutput()
	return platform.Gate(ctx, "tenant "+tenant+": app", func(wctx context.Context, v []any) error {
		id, edge := fmt.Sprint(v[0]), fmt.Sprint(v[1])
		if err := p.Engine.Wait(wctx, id, p.appWithin); err != nil {
			return err
		}
		joined, err := p.Engine.Connect(wctx, edge, id, alias)
		if err != nil {
			return fmt.Errorf("joining the edge network as %s: %w", alias, err)
		}
		if joined && p.existing[tenant] {
			// Every nginx worker asks Docker's DNS again within this
			// time, and so knows the new container before the old one
			// may stop. A new tenant's route is installed after this,
			// and nginx's new workers ask afresh.
			select {
			case <-time.After(dnsSettle):
			case <-wctx.Done():
				return wctx.Err()
			}
		}
		return nil
	}, t.Upstream(), app.ID(), p.Edge), nil
}

// dnsSettle outlasts the router's cache of Docker's DNS answers (valid=5s
// in nginx/router.conf.tmpl).
const dnsSettle = 6 * time.Second

// Retire stops the tenant's other app containers once routed resolves: the
// versions a release replaced (Pulumi removes them at the end of the
// update) and any a killed update left running. Each gets SIGTERM and the
// app's grace period, as the provider's delete gives it: the app stops
// accepting at once, so nginx passes new requests to the new version, and
// finishes those in flight. Stopping it here, not at the end of the update,
// means a release that fails for another tenant leaves this one serving
// its new version only.
func (p *Platform) Retire(ctx *pulumi.Context, tenant string, routed pulumi.StringOutput) pulumi.StringOutput {
	current, ok := p.apps[tenant]
	if !ok {
		return routed
	}
	return platform.Gate(ctx, "tenant "+tenant+": stopping its replaced app:", func(wctx context.Context, v []any) error {
		id := fmt.Sprint(v[1])
		apps, err := p.Engine.Containers(wctx, map[string]string{contract.LabelStack: p.prefix, contract.LabelTenant: tenant, contract.LabelRole: "app"})
		if err != nil {
			return err
		}
		for _, a := range apps {
			if a.ID == id || a.State != "running" {
				continue
			}
			if err := p.Engine.StopContainer(wctx, a.ID, appGrace); err != nil {
				return fmt.Errorf("%s: %w", a.Name, err)
			}
		}
		return nil
	}, "retired", routed, current)
}
