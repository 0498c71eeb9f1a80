package dockerapi

import (
	"context"
	"net/netip"

	"github.com/moby/moby/client"
)

// Network is a network on the engine, as far as subnet planning needs it.
type Network struct {
	ID      string
	Name    string
	Labels  map[string]string
	Subnets []netip.Prefix
	// Gateways maps each subnet to its gateway address, where set.
	Gateways map[netip.Prefix]netip.Addr
}

// Networks lists every network on the engine with its IPv4 subnets.
func (c *Client) Networks(ctx context.Context) ([]Network, error) {
	res, err := c.api.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return nil, err
	}
	nets := make([]Network, 0, len(res.Items))
	for _, r := range res.Items {
		n := Network{ID: r.ID, Name: r.Name, Labels: r.Labels, Gateways: map[netip.Prefix]netip.Addr{}}
		for _, cfg := range r.IPAM.Config {
			if !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4() {
				continue
			}
			n.Subnets = append(n.Subnets, cfg.Subnet)
			if cfg.Gateway.IsValid() {
				n.Gateways[cfg.Subnet] = cfg.Gateway
			}
		}
		nets = append(nets, n)
	}
	return nets, nil
}
