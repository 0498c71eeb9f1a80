package tenants

import (
	"fmt"
	"strconv"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/spec"
)

// newApp declares the tenant's app container: on its private network to
// reach its database, and on the edge network under the tenant's name, where
// the router finds it.
func newApp(ctx *pulumi.Context, args Args, name func(string) string, image pulumi.StringInput, network *docker.Network, databaseURL pulumi.StringOutput, migrate *docker.Container, opts ...pulumi.ResourceOption) (*docker.Container, error) {
	tenant := args.Tenant.Name
	app, err := docker.NewContainer(ctx, tenant+"-app", &docker.ContainerArgs{
		Name:    pulumi.String(name("app")),
		Image:   image,
		Command: pulumi.StringArray{pulumi.String("serve")},
		Envs: pulumi.StringArray{
			pulumi.String("TENANT=" + tenant),
			pulumi.String("LISTEN_ADDR=:" + strconv.Itoa(spec.AppPort)),
			pulumi.String("ALLOWED_HOSTS=" + allowedHosts(args.Tenant, args.Stack.Domain)),
			pulumi.String("DATABASE_URL_FILE=" + spec.DatabaseURLFile),
		},
		Uploads: docker.ContainerUploadArray{
			docker.ContainerUploadArgs{File: pulumi.String(spec.DatabaseURLFile), Content: databaseURL},
		},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
			docker.ContainerNetworksAdvancedArgs{Name: network.Name},
			docker.ContainerNetworksAdvancedArgs{Name: args.EdgeNetwork, Aliases: pulumi.StringArray{pulumi.String(tenant)}},
		},
		// No StartInterval: it needs Docker API 1.44, and Debian 12 ships 1.41.
		Healthcheck: docker.ContainerHealthcheckArgs{
			Tests:       pulumi.StringArray{pulumi.String("CMD"), pulumi.String(spec.AppBinary), pulumi.String("healthcheck")},
			Interval:    pulumi.String("3s"),
			Timeout:     pulumi.String("3s"),
			Retries:     pulumi.Int(3),
			StartPeriod: pulumi.String("30s"),
		},
		// An init reaps health-check processes left behind by a timeout.
		Init:        pulumi.Bool(true),
		Wait:        pulumi.Bool(true),
		WaitTimeout: pulumi.Int(120),
		Restart:     pulumi.String("unless-stopped"),
		Memory:      memory(args.Stack.AppMemory(args.Tenant)),
		MemorySwap:  memory(args.Stack.AppMemory(args.Tenant)),
		Labels: append(labels(args.Prefix, tenant, "app"),
			docker.ContainerLabelArgs{Label: pulumi.String("polls.migration"), Value: appGate(tenant, migrate)}),
	}, append(opts, named, notUpdatedInPlace)...)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: app container: %w", tenant, err)
	}
	return app, nil
}
