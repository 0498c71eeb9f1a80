// Package recovery decides what to remove after an interrupted `pulumi up`
// (Ctrl-C, a killed CI job, a lost machine): the objects the update made on
// the Docker engine that the stack's state does not hold.
//
// The state is written after each step of an update, but an object made by
// a step in flight when the update was killed is in it only as a pending
// operation, and with PULUMI_SKIP_CHECKPOINTS=true nothing the update did
// is in it at all. Such an object is an orphan: the next `pulumi up` does
// not know it, so it makes another. An orphan with a fixed name (a new
// tenant's database, network or backup agent) makes that create fail; one
// with a generated name (an app container, a migration, a Swarm secret)
// stays behind, running, for good.
//
// Removing orphans is safe except for one case: a running app container of
// a tenant the state already holds may be the one serving the tenant (on
// one host, holding its app name on the edge network), if the update was
// killed after it took over and before it was recorded. Such a container
// goes only after the update ran again and gave the tenant a serving
// container of its own. A tenant whose network
// is itself an orphan was being added: nothing served by it was promised
// yet, and all of it goes first, so that the update can make it again.
//
// Volumes are never orphans here: a tenant's data volume has a fixed name
// and the next create adopts it, data and all.
package recovery

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/polls-tenants/polls/contract"
)

// Kind is the kind of an object on the engine.
type Kind string

// The kinds of object an update makes that recovery looks at.
const (
	Container Kind = "container"
	Service   Kind = "service"
	Secret    Kind = "secret"
	Network   Kind = "network"
)

// Object is an object on the engine as recovery needs it.
type Object struct {
	Kind   Kind
	ID     string
	Name   string
	Labels map[string]string
	// Running is true for a container that runs (or restarts).
	Running bool
}

// Plan is what to remove, in order: Before the update runs again, and
// After it succeeded.
type Plan struct {
	// Before holds the orphans that serve nothing, and every orphan of a
	// tenant that was being added: containers and services first, then
	// networks, so that none is still in use when its turn comes.
	Before []Object
	// After holds the running app containers of tenants the state holds
	// (a route may point at one until the update re-points it), then the
	// Swarm secrets (a service may use one until the update rolls it to
	// its own).
	After []Object
}

// swarmTask is the label Swarm puts on its tasks' containers: a task is
// its service's, never the stack's own.
const swarmTask = "com.docker.swarm.task.id"

// StateIDs reads the provider IDs of every resource in a deployment, as
// `pulumi stack export` prints it.
func StateIDs(export []byte) (map[string]bool, error) {
	resources, err := readExport(export)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, r := range resources {
		if r.ID != "" {
			ids[r.ID] = true
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("the stack's state holds no resource: recovery would take everything of the stack for an orphan; run pulumi up (or pulumi destroy) instead")
	}
	return ids, nil
}

// RefreshTargets returns the URNs of the containers in a deployment, as
// `pulumi stack export` prints it: what `pulumi refresh` must read back
// after an interrupted update, and all it may. A container the update
// removed is still in the state, and the next update would fail to remove
// it again. Swarm services are left out: the docker provider reads a
// service's task template back with fields the program does not declare,
// and the next update then replaces the service, delete-first (seen in
// TestSwarm: every database service replaced, a third of the requests
// failed meanwhile). The update updates a service the killed one left
// half-way in place, to the spec Swarm already runs.
func RefreshTargets(export []byte) ([]string, error) {
	resources, err := readExport(export)
	if err != nil {
		return nil, err
	}
	var urns []string
	for _, r := range resources {
		if r.Type == "docker:index/container:Container" {
			urns = append(urns, r.URN)
		}
	}
	return urns, nil
}

// resource is a resource of a deployment as `pulumi stack export` prints
// it, as far as recovery reads it.
type resource struct {
	URN  string `json:"urn"`
	Type string `json:"type"`
	ID   string `json:"id"`
}

func readExport(export []byte) ([]resource, error) {
	var d struct {
		Deployment struct {
			Resources []resource `json:"resources"`
		} `json:"deployment"`
	}
	if err := json.Unmarshal(export, &d); err != nil {
		return nil, fmt.Errorf("read the stack's state (pulumi stack export): %w", err)
	}
	return d.Deployment.Resources, nil
}

// Orphans returns the plan for the objects of the stack named prefix that
// state (provider IDs) does not hold. An object is the stack's when it
// carries the stack's label, or, for a network, when it has one of the
// names the program gives the stack's networks (a tenant's network carries
// only its tenant's label).
func Orphans(prefix string, state map[string]bool, objs []Object) Plan {
	var orphans []Object
	for _, o := range objs {
		if !state[o.ID] && owned(prefix, o) {
			orphans = append(orphans, o)
		}
	}
	// Tenants whose network is an orphan were being added.
	adding := map[string]bool{}
	for _, o := range orphans {
		if o.Kind == Network && o.Labels[contract.LabelTenant] != "" {
			adding[o.Labels[contract.LabelTenant]] = true
		}
	}
	var p Plan
	for _, o := range orphans {
		known := !adding[o.Labels[contract.LabelTenant]]
		if known && (o.Kind == Secret || o.Kind == Container && o.Running && o.Labels[contract.LabelRole] == "app") {
			p.After = append(p.After, o)
		} else {
			p.Before = append(p.Before, o)
		}
	}
	// By kind, so networks come after what is attached to them, secrets
	// after the containers.
	sortObjects(p.Before)
	sortObjects(p.After)
	return p
}

func owned(prefix string, o Object) bool {
	switch o.Kind {
	case Container:
		return o.Labels[contract.LabelStack] == prefix && o.Labels[swarmTask] == ""
	case Network:
		t := o.Labels[contract.LabelTenant]
		return o.Labels[contract.LabelStack] == prefix || o.Name == prefix+"-edge" ||
			(t != "" && o.Name == contract.NetworkName(prefix, t))
	}
	return o.Labels[contract.LabelStack] == prefix
}

// sortObjects orders objects by kind (containers before services), then
// name, so that a plan reads the same every time.
func sortObjects(objs []Object) {
	rank := map[Kind]int{Container: 0, Service: 1, Secret: 2, Network: 3}
	sort.SliceStable(objs, func(i, j int) bool {
		if objs[i].Kind != objs[j].Kind {
			return rank[objs[i].Kind] < rank[objs[j].Kind]
		}
		return objs[i].Name < objs[j].Name
	})
}
