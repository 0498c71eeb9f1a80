// Package placement decides which Swarm node each tenant's database is
// pinned to. A database's volume is local to the node it runs on, so a
// database must never move by itself: once placed, a tenant stays on its
// node until the operator moves the data and says so.
//
// It is pure: the program reads the nodes and the current pins from the
// cluster and passes them in.
package placement

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Node is a Swarm node as placement sees it.
type Node struct {
	Hostname string
	// Available is true when new tasks can run on the node: it is ready and
	// its availability is active.
	Available bool
	// State says why not, e.g. "drain" or "down"; "" when available.
	State string
}

// Tenant is a tenant's wish: Node is its configured pin, "" for none.
type Tenant struct {
	Name string
	Node string
	// Restoring says the tenant's database is about to be restored from
	// its backups: its data then comes from there, not from a node, so it
	// may be pinned to a node other than the one holding its old copy.
	Restoring bool
}

// Plan returns each tenant's database node:
//   - a tenant whose database already runs keeps its node (current), and
//     a configured pin that differs from it is an error: the data would
//     stay behind;
//   - so does a tenant whose database is gone but whose data a node holds
//     (data: the nodes labelled as holding it, e.g. after the tenant was
//     removed and is now added back); data on several nodes needs a pin;
//   - unless the tenant is being restored from its backups: then its pin
//     wins over where its old copy is (a database lost with its node comes
//     back on another);
//   - a configured pin must name a node of the cluster;
//   - any other tenant goes to the available node with the fewest
//     databases, the first by hostname on a tie, counting the tenants
//     planned before it.
//
// Warnings name tenants whose node cannot run tasks now: their database
// stays down there rather than start empty elsewhere.
func Plan(tenants []Tenant, current map[string]string, data map[string][]string, nodes []Node) (plan map[string]string, warnings []string, err error) {
	byName := map[string]Node{}
	var names []string
	for _, n := range nodes {
		byName[n.Hostname] = n
		names = append(names, n.Hostname)
	}
	sort.Strings(names)
	load := map[string]int{}
	for _, node := range current {
		load[node]++
	}
	plan = map[string]string{}
	var problems, moved []string
	var unplaced []Tenant
	for _, t := range tenants {
		cur, placed := current[t.Name]
		if held := data[t.Name]; !placed && len(held) == 1 {
			cur, placed = held[0], true
			load[cur]++
		} else if !placed && len(held) > 1 && !contains(held, t.Node) {
			problems = append(problems, fmt.Sprintf("polls:tenants.%s: nodes %s each hold data of this tenant: set its node to the one to use, e.g. `pulumi config set --path 'polls:tenants.%s.node' %s`", t.Name, strings.Join(held, " and "), t.Name, held[0]))
			continue
		}
		switch {
		case t.Node != "" && byName[t.Node].Hostname == "":
			problems = append(problems, fmt.Sprintf("polls:tenants.%s: node %q is not a node of the cluster: use one of %s (`docker node ls`)", t.Name, t.Node, strings.Join(names, ", ")))
		case placed && t.Node != "" && t.Node != cur && !t.Restoring:
			problems = append(problems, fmt.Sprintf("polls:tenants.%s: node is %q, but the tenant's database and its node-local volume are on %q: set it back to %q (or remove it); to move the database, restore it there from its backups (also set `pulumi config set --path 'polls:tenants.%s.restore' latest`; a restore is applied once per value, so if it is latest already, give the current time instead), or copy its volume to %q first, then remove its service (`docker service rm`) and set the node", t.Name, t.Node, cur, cur, t.Name, t.Node))
		case placed && t.Node != "" && t.Node != cur:
			plan[t.Name] = t.Node
			load[t.Node]++
			moved = append(moved, fmt.Sprintf("tenant %s: its database moves from node %s to %s and is restored there from its backups; its old copy on %s is never started again", t.Name, cur, t.Node, cur))
		case placed:
			plan[t.Name] = cur
		case t.Node != "":
			plan[t.Name] = t.Node
			load[t.Node]++
		default:
			unplaced = append(unplaced, t)
		}
	}
	for _, t := range unplaced {
		best := ""
		for _, n := range names {
			if byName[n].Available && (best == "" || load[n] < load[best]) {
				best = n
			}
		}
		if best == "" {
			problems = append(problems, fmt.Sprintf("polls:tenants.%s: no Swarm node is available for its database (ready and active): make one available (`docker node update --availability active <node>`) or pin the tenant with its node setting", t.Name))
			continue
		}
		plan[t.Name] = best
		load[best]++
	}
	if len(problems) > 0 {
		return nil, nil, fmt.Errorf("invalid stack config (nothing was changed):\n%s", strings.Join(problems, "\n"))
	}
	warnings = moved
	for _, t := range tenants {
		if n, ok := byName[plan[t.Name]]; ok && !n.Available {
			warnings = append(warnings, fmt.Sprintf("tenant %s: its database is pinned to node %s, which is %s: it stays down until the node is available again (`docker node update --availability active %s`), as its data is on that node; or bring it up on another node from its backups, losing at most their RPO: `pulumi config set --path 'polls:tenants.%s.node' <node>` and `pulumi config set --path 'polls:tenants.%s.restore' latest`, then `pulumi up`", t.Name, n.Hostname, n.State, n.Hostname, t.Name, t.Name))
		}
	}
	return plan, warnings, nil
}

func contains(list []string, s string) bool {
	return slices.Contains(list, s)
}
