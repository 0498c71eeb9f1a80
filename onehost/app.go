package onehost

import (
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/tenants"
)

// App declares the tenant's app container: on its private network to reach
// its database, and on the edge network, where the tenant's route finds it
// by its container name.
//
// Its name is generated (<tenant>-app-<random>), not fixed, so a new version
// is created beside the old one: it is replaced create-first, the route
// switches once the new one is healthy, and the old one is stopped last,
// with a grace period for requests in flight.
func (p *Platform) App(ctx *pulumi.Context, t tenants.Parts, network, migrated pulumi.StringOutput) (pulumi.StringOutput, error) {
	tenant := t.Tenant.Name
	app, err := docker.NewContainer(ctx, tenant+"-app", &docker.ContainerArgs{
		Image:   t.Image,
		Command: pulumi.ToStringArray(contract.AppCommand),
		Envs:    pulumi.ToStringArray(t.AppEnv()),
		Uploads: docker.ContainerUploadArray{
			docker.ContainerUploadArgs{File: pulumi.String(contract.DatabaseURLFile), Content: t.Secrets.DatabaseURL},
		},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
			docker.ContainerNetworksAdvancedArgs{Name: network},
			docker.ContainerNetworksAdvancedArgs{Name: p.Edge},
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
		DestroyGraceSeconds: pulumi.Int(10),
		Memory:              platform.Memory(t.Stack.AppMemory(t.Tenant)),
		MemorySwap:          platform.Memory(t.Stack.AppMemory(t.Tenant)),
		Labels: platform.ContainerLabels(t, "app",
			docker.ContainerLabelArgs{Label: pulumi.String("polls.migration"), Value: migrated}),
	}, append(t.Opts, platform.CreateFirst, notUpdatedInPlace)...)
	if err != nil {
		return pulumi.StringOutput{}, wrap("container", err)
	}
	ready := p.healthy(ctx, "tenant "+tenant+": app", app, p.appWithin)
	return pulumi.All(app.Name, ready).ApplyT(func(v []any) string {
		return contract.Upstream(v[0].(string))
	}).(pulumi.StringOutput), nil
}
