package dockerapi

import (
	"context"
	"net/netip"
)

// Network is a network on the engine, as far as subnet planning needs it.
type Network struct {
	Name    string
	Labels  map[string]string
	Subnets []netip.Prefix
	// Gateways maps each subnet to its gateway address, where set.
	Gateways map[netip.Prefix]netip.Addr
}

// Networks lists every network on the engine with its IPv4 subnets.
func (c *Client) Networks(ctx context.Context) ([]Network, error) {
	var raw []struct {
		Name   string
		Labels map[string]string
		IPAM   struct {
			Config []struct{ Subnet, Gateway string }
		}
	}
	if err := c.do(ctx, "GET", "/networks", nil, nil, &raw); err != nil {
		return nil, err
	}
	nets := make([]Network, 0, len(raw))
	for _, r := range raw {
		n := Network{Name: r.Name, Labels: r.Labels, Gateways: map[netip.Prefix]netip.Addr{}}
		for _, cfg := range r.IPAM.Config {
			p, err := netip.ParsePrefix(cfg.Subnet)
			if err != nil || !p.Addr().Is4() {
				continue
			}
			n.Subnets = append(n.Subnets, p)
			if gw, err := netip.ParseAddr(cfg.Gateway); err == nil {
				n.Gateways[p] = gw
			}
		}
		nets = append(nets, n)
	}
	return nets, nil
}
