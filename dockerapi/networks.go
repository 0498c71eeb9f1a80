package dockerapi

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	dnetwork "github.com/moby/moby/api/types/network"
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

// Connect attaches container id to network under alias, a DNS name the
// network's other containers resolve to every container holding it. It
// reports false, changing nothing, when the container is on the network
// with that alias already.
func (c *Client) Connect(ctx context.Context, network, id, alias string) (bool, error) {
	res, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return false, err
	}
	if s := res.Container.NetworkSettings; s != nil {
		if ep, ok := s.Networks[network]; ok && ep != nil {
			if slices.Contains(ep.Aliases, alias) {
				return false, nil
			}
			return false, fmt.Errorf("container %s is on network %s without the alias %s", id, network, alias)
		}
	}
	_, err = c.api.NetworkConnect(ctx, network, client.NetworkConnectOptions{
		Container:      id,
		EndpointConfig: &dnetwork.EndpointSettings{Aliases: []string{alias}},
	})
	return err == nil, err
}
