package tenants

import (
	"fmt"
	"strconv"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/spec"
)

// newApp declares the tenant's app container: on its private network to
// reach its database, and on the edge network, where the tenant's route
// finds it by its container name.
//
// Its name is generated (<tenant>-app-<random>), not fixed, so a new version
// is created beside the old one: it is replaced create-first, the route
// switches once the new one is healthy, and the old one is stopped last,
// with a grace period for requests in flight.
func newApp(ctx *pulumi.Context, args Args, image pulumi.StringInput, network *docker.Network, databaseURL pulumi.StringOutput, migrate *docker.Container, opts ...pulumi.ResourceOption) (*docker.Container, error) {
	tenant := args.Tenant.Name
	app, err := docker.NewContainer(ctx, tenant+"-app", &docker.ContainerArgs{
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
			docker.ContainerNetworksAdvancedArgs{Name: args.EdgeNetwork},
		},
		// The program probes the check itself while the app starts (see
		// healthy), so the engine's interval only paces checks afterwards:
		// long enough that hundreds of idle tenants cost little.
		Healthcheck: docker.ContainerHealthcheckArgs{
			Tests:       pulumi.StringArray{pulumi.String("CMD"), pulumi.String(spec.AppBinary), pulumi.String("healthcheck")},
			Interval:    pulumi.String("30s"),
			Timeout:     pulumi.String("3s"),
			Retries:     pulumi.Int(3),
			StartPeriod: pulumi.String("30s"),
		},
		// An init reaps health-check processes left behind by a timeout.
		Init:    pulumi.Bool(true),
		Restart: pulumi.String("unless-stopped"),
		// Stop with SIGTERM and wait: the app drains requests in flight
		// (8s), where the provider would otherwise kill it at once.
		DestroyGraceSeconds: pulumi.Int(10),
		Memory:              memory(args.Stack.AppMemory(args.Tenant)),
		MemorySwap:          memory(args.Stack.AppMemory(args.Tenant)),
		Labels: append(labels(args.Prefix, tenant, "app"),
			docker.ContainerLabelArgs{Label: pulumi.String("polls.migration"), Value: appGate(tenant, migrate)}),
	}, append(opts, createFirst, notUpdatedInPlace)...)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: app container: %w", tenant, err)
	}
	return app, nil
}
