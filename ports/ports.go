// Package ports plans the port each tenant's app listens on: one of its
// own, never another tenant's.
//
// The router finds a tenant's apps by a name Docker's DNS answers, and
// keeps an answer for a few seconds (nginx's resolver cache). An address
// freed by a stopped app can meanwhile be handed to another tenant's new
// app on the same network. Were every app on one port, a request still
// sent to that address would reach the other tenant's app. With each
// tenant on its own port, it reaches a closed port instead, and nginx
// passes it to the tenant's next address.
//
// A tenant's port is chosen once and kept: the plan starts from the ports
// the stack's apps already carry (their polls.port label), and a tenant
// without one gets the lowest free port of the range. Ports an app still
// holds stay taken, even if its tenant was removed, until that app is gone.
//
// The package is pure: the caller reads the apps' labels from the engine.
package ports

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/polls-tenants/polls/contract"
)

// The range tenants' apps listen on: high enough to stay clear of every
// port the stack's other containers use (the router's 80 and 443, the
// apps' former 8000, the exporters' and Prometheus' 9xxx), and below the
// kernel's ephemeral ports.
const (
	First = 20000
	Last  = 29999
)

// Plan returns each tenant's port. held maps a tenant (in the stack or no
// longer) to the ports its apps on the engine listen on; a tenant in
// tenants keeps the lowest of its own that is in the range and held by no
// other tenant, and every held port stays out of the others' reach.
func Plan(tenants []string, held map[string][]int) (map[string]int, error) {
	owners := map[int][]string{}
	for t, ps := range held {
		for _, p := range ps {
			if !slices.Contains(owners[p], t) {
				owners[p] = append(owners[p], t)
			}
		}
	}
	taken := func(p int) bool { return len(owners[p]) > 0 }
	plan := map[string]int{}
	var fresh []string
	for _, t := range tenants {
		own := slices.Clone(held[t])
		slices.Sort(own)
		kept := false
		for _, p := range own {
			if p >= First && p <= Last && len(owners[p]) == 1 {
				plan[t], kept = p, true
				break
			}
		}
		if !kept {
			fresh = append(fresh, t)
		}
	}
	next := First
	for _, t := range fresh {
		for next <= Last && taken(next) {
			next++
		}
		if next > Last {
			return nil, fmt.Errorf("no free app port left in %d-%d for tenant %s: one stack holds at most %d tenants", First, Last, t, Last-First+1)
		}
		plan[t] = next
		owners[next] = append(owners[next], t)
		next++
	}
	return plan, nil
}

// Held reads which ports the apps with these labels hold, by tenant, from
// their contract.LabelTenant and contract.LabelPort. An app without a port
// label (from before per-tenant ports) holds none in the range.
func Held(apps []map[string]string) map[string][]int {
	held := map[string][]int{}
	for _, l := range apps {
		t := l[contract.LabelTenant]
		p, err := strconv.Atoi(l[contract.LabelPort])
		if t == "" || err != nil {
			continue
		}
		if !slices.Contains(held[t], p) {
			held[t] = append(held[t], p)
		}
	}
	return held
}
