package onehost

import (
	"fmt"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/tenants"
)

// Network declares the tenant's private network. It is internal (no route
// out of the host) and holds only this tenant's database, migration and app,
// so no other tenant's container can even resolve this tenant's database.
//
// Its subnet comes from the stack's pool (package subnets), not from the
// engine's default pools, which hold only about 30 networks. The gateway is
// given too: the provider compares the whole address config, and Docker
// would otherwise fill in one that then shows as a change.
func (p *Platform) Network(ctx *pulumi.Context, t tenants.Parts) (pulumi.StringOutput, error) {
	tenant := t.Tenant.Name
	subnet, ok := p.Subnets[tenant]
	if !ok {
		return pulumi.StringOutput{}, fmt.Errorf("no subnet planned for tenant %s", tenant)
	}
	labels := docker.NetworkLabelArray{
		docker.NetworkLabelArgs{Label: pulumi.String(contract.LabelTenant), Value: pulumi.String(tenant)},
	}
	if t.SecretsLabel {
		labels = append(labels, docker.NetworkLabelArgs{Label: pulumi.String(contract.LabelSecrets), Value: pulumi.String(contract.SecretsDerived)})
	}
	n, err := docker.NewNetwork(ctx, tenant+"-net", &docker.NetworkArgs{
		Name:     pulumi.String(t.Name("net")),
		Internal: pulumi.Bool(true),
		IpamConfigs: docker.NetworkIpamConfigArray{
			docker.NetworkIpamConfigArgs{Subnet: pulumi.String(subnet.String()), Gateway: pulumi.String(p.Gateways[tenant].String())},
		},
		Labels: labels,
	}, append(t.Opts, platform.Named)...)
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	return n.Name, nil
}
