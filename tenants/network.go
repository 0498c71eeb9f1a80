package tenants

import (
	"fmt"
	"net/netip"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// newNetwork declares the tenant's private network. It is internal (no route
// out of the host) and holds only this tenant's database, migration and app,
// so no other tenant's container can even resolve this tenant's database.
//
// Its subnet comes from the stack's pool (package subnets), not from the
// engine's default pools, which hold only about 30 networks. The gateway is
// given too: the provider compares the whole address config, and Docker
// would otherwise fill in one that then shows as a change.
func newNetwork(ctx *pulumi.Context, tenant, dockerName string, subnet netip.Prefix, gateway netip.Addr, opts ...pulumi.ResourceOption) (*docker.Network, error) {
	n, err := docker.NewNetwork(ctx, tenant+"-net", &docker.NetworkArgs{
		Name:     pulumi.String(dockerName),
		Internal: pulumi.Bool(true),
		IpamConfigs: docker.NetworkIpamConfigArray{
			docker.NetworkIpamConfigArgs{Subnet: pulumi.String(subnet.String()), Gateway: pulumi.String(gateway.String())},
		},
		Labels: docker.NetworkLabelArray{
			docker.NetworkLabelArgs{Label: pulumi.String("polls.tenant"), Value: pulumi.String(tenant)},
		},
	}, append(opts, named)...)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: network: %w", tenant, err)
	}
	return n, nil
}
