package onehost

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/subnets"
)

// planSubnets gives every tenant its private subnet: the one its network
// already has, or the lowest free /28 of polls:subnetPool (package subnets).
// Nothing is created when the pool collides with a network on the engine
// or is full. existing maps each tenant whose network is on the engine to
// that network's labels.
func planSubnets(ctx context.Context, engine Engine, s spec.Stack, prefix string) (plan map[string]netip.Prefix, gateways map[string]netip.Addr, existing map[string]map[string]string, err error) {
	nets, err := engine.Networks(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list the Docker engine's networks to plan tenant subnets: %w", err)
	}
	byName := map[string]dockerapi.Network{}
	var all []subnets.Network
	for _, n := range nets {
		byName[n.Name] = n
		_, shared := n.Labels["polls.tenant"]
		all = append(all, subnets.Network{Name: n.Name, Subnets: n.Subnets, Shared: shared})
	}
	current := map[string]netip.Prefix{}
	existing = map[string]map[string]string{}
	gateways = map[string]netip.Addr{}
	names := make([]string, len(s.Tenants))
	for i, t := range s.Tenants {
		names[i] = t.Name
		if n, ok := byName[contract.NetworkName(prefix, t.Name)]; ok && len(n.Subnets) > 0 {
			current[t.Name] = n.Subnets[0]
			existing[t.Name] = n.Labels
			if gw, ok := n.Gateways[n.Subnets[0]]; ok {
				gateways[t.Name] = gw
			}
		}
	}
	plan, err = subnets.Plan(s.SubnetPool, names, current, all)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("invalid stack config (nothing was changed):\n%w", err)
	}
	for t, p := range plan {
		if _, ok := gateways[t]; !ok {
			gateways[t] = subnets.Gateway(p)
		}
	}
	return plan, gateways, existing, nil
}
