// Package subnets plans the tenants' private network addresses: each tenant
// gets one small subnet carved out of a pool the stack owns, so a Docker
// engine's default address pools (about 30 bridge networks) never limit how
// many tenants one host holds.
//
// A tenant's subnet is chosen once and then never changes: a changed subnet
// would replace the tenant's network and with it its database and app. So
// the plan starts from the subnets the tenants' networks already have, and
// only tenants without a network get a new one: the lowest free slot of the
// pool that no network on the engine uses. Adding or removing a tenant
// therefore moves no other tenant.
//
// The package is pure: the caller reads the engine's networks and passes
// them in.
package subnets

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// TenantBits is the prefix length of each tenant's subnet: a /28 holds 13
// containers besides the gateway, room for the database, the migration and
// two app containers while a release hands over.
const TenantBits = 28

// Network is a network that exists on the engine.
type Network struct {
	// Name is the Docker network's name.
	Name string
	// Subnets are its IPv4 subnets.
	Subnets []netip.Prefix
	// Shared marks a network that may sit inside the pool: another polls
	// stack's tenant network on the same engine. Any other network that
	// overlaps the pool is an error, since the pool must be ours.
	Shared bool
}

// Plan returns each tenant's subnet. tenants are the tenant names, current
// maps a tenant to the subnet its existing network has (kept as it is, even
// outside the pool), and networks are all the networks on the engine (the
// tenants' own included). The error names the config key and the fix.
func Plan(pool netip.Prefix, tenants []string, current map[string]netip.Prefix, networks []Network) (map[string]netip.Prefix, error) {
	if err := CheckPool(pool); err != nil {
		return nil, err
	}
	own := map[string]bool{}
	for _, p := range current {
		own[p.String()] = true
	}
	var taken []netip.Prefix
	var foreign []string
	for _, n := range networks {
		for _, s := range n.Subnets {
			taken = append(taken, s)
			if !n.Shared && !own[s.String()] && s.Overlaps(pool) {
				foreign = append(foreign, fmt.Sprintf("%s (%s)", n.Name, s))
			}
		}
	}
	if len(foreign) > 0 {
		sort.Strings(foreign)
		return nil, fmt.Errorf("polls:subnetPool: %s overlaps network %s on the Docker engine: choose a pool no network uses, e.g. `pulumi config set polls:subnetPool 10.231.0.0/16`", pool, strings.Join(foreign, ", "))
	}
	plan := make(map[string]netip.Prefix, len(tenants))
	var missing []string
	for _, t := range tenants {
		if p, ok := current[t]; ok {
			plan[t] = p
			continue
		}
		missing = append(missing, t)
	}
	sort.Strings(missing)
	next := pool.Addr()
	for _, t := range missing {
		slot, ok := free(pool, &next, taken)
		if !ok {
			return nil, fmt.Errorf("polls:subnetPool: %s holds %d tenant subnets (/%d), too few for %d tenants besides the networks already in it: choose a larger pool, e.g. a /16 holds %d", pool, Slots(pool), TenantBits, len(tenants), 1<<(TenantBits-16))
		}
		plan[t] = slot
		taken = append(taken, slot)
	}
	return plan, nil
}

// CheckPool reports whether pool can hold tenant subnets: an IPv4 network
// address with a prefix no longer than TenantBits.
func CheckPool(pool netip.Prefix) error {
	switch {
	case !pool.IsValid() || !pool.Addr().Is4():
		return fmt.Errorf("polls:subnetPool: %q is not an IPv4 network: use CIDR notation, e.g. 10.230.0.0/16", pool)
	case pool.Bits() > TenantBits:
		return fmt.Errorf("polls:subnetPool: %s is smaller than one tenant subnet (/%d): use a /%d or larger, e.g. 10.230.0.0/16", pool, TenantBits, TenantBits)
	case pool.Masked() != pool:
		return fmt.Errorf("polls:subnetPool: %s has host bits set: use its network address, %s", pool, pool.Masked())
	}
	return nil
}

// Slots returns how many tenant subnets pool holds.
func Slots(pool netip.Prefix) int {
	return 1 << (TenantBits - pool.Bits())
}

// Gateway returns the address Docker's bridge takes in subnet: its first.
func Gateway(subnet netip.Prefix) netip.Addr {
	return subnet.Addr().Next()
}

// free returns the first slot at or after *next that overlaps nothing in
// taken, and moves *next past it.
func free(pool netip.Prefix, next *netip.Addr, taken []netip.Prefix) (netip.Prefix, bool) {
	for next.IsValid() && pool.Contains(*next) {
		slot := netip.PrefixFrom(*next, TenantBits)
		*next = advance(*next)
		if !overlapsAny(slot, taken) {
			return slot, true
		}
	}
	return netip.Prefix{}, false
}

func advance(a netip.Addr) netip.Addr {
	b := a.As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n += 1 << (32 - TenantBits)
	if n == 0 {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	return slices.ContainsFunc(list, p.Overlaps)
}
