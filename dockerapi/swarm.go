package dockerapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// Node is a Swarm node, as far as placing databases needs it.
type Node struct {
	ID       string
	Hostname string
	// Ready is the node's status as the managers see it; Availability is
	// "active", "pause" or "drain".
	Ready        bool
	Availability string
	// Labels are the node's labels (`docker node update --label-add`).
	Labels map[string]string
}

// ErrNotManager says the engine is not a Swarm manager.
var ErrNotManager = errors.New("the Docker engine is not a Swarm manager")

// Nodes lists the cluster's nodes. On an engine that is not a Swarm manager
// it fails with ErrNotManager.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	res, err := c.api.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		// The engine answers 503 Service Unavailable on a worker or on an
		// engine outside any swarm.
		if cerrdefs.IsUnavailable(err) {
			return nil, fmt.Errorf("%w (%v)", ErrNotManager, err)
		}
		return nil, err
	}
	nodes := make([]Node, 0, len(res.Items))
	for _, r := range res.Items {
		nodes = append(nodes, Node{ID: r.ID, Hostname: r.Description.Hostname, Ready: r.Status.State == swarm.NodeStateReady,
			Availability: string(r.Spec.Availability), Labels: r.Spec.Labels})
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Hostname < nodes[j].Hostname })
	return nodes, nil
}

// LabelNode sets label key to value on the node with the given hostname,
// unless it has it already. Node updates are versioned: one that raced
// another update ("update out of sequence") is retried on a fresh read.
func (c *Client) LabelNode(ctx context.Context, hostname, key, value string) error {
	return c.updateNodeLabels(ctx, hostname, func(l map[string]string) bool {
		if v, ok := l[key]; ok && v == value {
			return false
		}
		l[key] = value
		return true
	})
}

// UnlabelNode removes label key from the node with the given hostname, if
// it has it; the node need not be up (its spec is the managers').
func (c *Client) UnlabelNode(ctx context.Context, hostname, key string) error {
	return c.updateNodeLabels(ctx, hostname, func(l map[string]string) bool {
		if _, ok := l[key]; !ok {
			return false
		}
		delete(l, key)
		return true
	})
}

// updateNodeLabels applies change to the node's labels and updates it when
// change says it changed them. Node updates are versioned: one that raced
// another update is retried.
func (c *Client) updateNodeLabels(ctx context.Context, hostname string, change func(map[string]string) bool) error {
	for attempt := 0; ; attempt++ {
		res, err := c.api.NodeList(ctx, client.NodeListOptions{})
		if err != nil {
			return err
		}
		i := -1
		for k, n := range res.Items {
			if n.Description.Hostname == hostname {
				i = k
				break
			}
		}
		if i < 0 {
			return fmt.Errorf("no Swarm node has hostname %q", hostname)
		}
		n := res.Items[i]
		spec := n.Spec
		spec.Labels = maps.Clone(spec.Labels)
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		if !change(spec.Labels) {
			return nil
		}
		_, err = c.api.NodeUpdate(ctx, n.ID, client.NodeUpdateOptions{Version: n.Version, Spec: spec})
		if err != nil && strings.Contains(err.Error(), "out of sequence") && attempt < 10 {
			continue
		}
		if err != nil {
			return fmt.Errorf("update the labels of Swarm node %s: %w", hostname, err)
		}
		return nil
	}
}

// RegistryAuth is a registry login the engine uses on the program's behalf.
type RegistryAuth struct {
	Username, Password, ServerAddress string
}

// Digest asks the engine for the digest an image reference has in its
// registry now, as `docker service create` does to pin one: the engine
// uses its own registry trust (certs.d) and the login given, if any.
func (c *Client) Digest(ctx context.Context, ref string, auth *RegistryAuth) (string, error) {
	var opts client.DistributionInspectOptions
	if auth != nil {
		b, err := json.Marshal(registry.AuthConfig{Username: auth.Username, Password: auth.Password, ServerAddress: auth.ServerAddress})
		if err != nil {
			return "", err
		}
		opts.EncodedRegistryAuth = base64.URLEncoding.EncodeToString(b)
	}
	res, err := c.api.DistributionInspect(ctx, ref, opts)
	if err != nil {
		return "", err
	}
	if res.Descriptor.Digest == "" {
		return "", fmt.Errorf("the registry gave no digest for %s", ref)
	}
	return res.Descriptor.Digest.String(), nil
}

// Service is a Swarm service, as far as the program needs it.
type Service struct {
	ID     string
	Name   string
	Labels map[string]string
}

// Services lists the services that carry every label given.
func (c *Client) Services(ctx context.Context, labels map[string]string) ([]Service, error) {
	res, err := c.api.ServiceList(ctx, client.ServiceListOptions{Filters: labelFilter(labels)})
	if err != nil {
		return nil, err
	}
	out := make([]Service, 0, len(res.Items))
	for _, r := range res.Items {
		out = append(out, Service{ID: r.ID, Name: r.Spec.Name, Labels: r.Spec.Labels})
	}
	return out, nil
}

// retryAsIs is how an operator makes `pulumi up` apply a service's declared
// spec again once Swarm runs another. Only a refresh tells the engine the
// running spec differs, and the docker provider reads a refreshed service
// back with fields the program does not declare, so the next update
// replaces it, delete-first: a refresh of every service (`pulumi up
// --refresh` alone) would interrupt every tenant (seen in TestSwarm), one
// targeted at the service only its own.
const retryAsIs = "`pulumi up --refresh --target` with the service's URN (`pulumi stack --show-urns`; it replaces the service, delete-first, a short interruption of its tenant; not --refresh alone, which replaces every service of the stack)"

// updateFailed reports whether the update was paused, or is rolling back,
// and that is still the service's last word: Swarm keeps an update's status
// after the spec is updated again, so a status older than the service's
// last update is stale. (A completed rollback is judged by the spec it put
// back, as a rollback itself updates the spec: see Declared.)
func updateFailed(u *swarm.UpdateStatus, updatedAt time.Time) bool {
	if u == nil || (u.State != swarm.UpdateStatePaused && u.State != swarm.UpdateStateRollbackStarted && u.State != swarm.UpdateStateRollbackPaused) {
		return false
	}
	var last time.Time
	if u.StartedAt != nil {
		last = *u.StartedAt
	}
	if u.CompletedAt != nil && u.CompletedAt.After(last) {
		last = *u.CompletedAt
	}
	return !updatedAt.After(last)
}

// Declared is the spec the program declared for a service, as far as
// WaitService checks that it is the one that runs.
type Declared struct {
	// Image is the image its tasks run.
	Image string
	// Env are variables its tasks' environment carries, one of which may
	// change with every change of its task template. Swarm's rollback puts
	// the previous spec back whole, so a rolled-back change that kept the
	// image (a rotated secret, a changed setting) shows as that variable
	// gone back, where the image alone would not tell.
	Env map[string]string
}

// runs reports whether a service's spec is the declared one.
func (d Declared) runs(spec swarm.ServiceSpec) bool {
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return d.Image == "" && len(d.Env) == 0
	}
	if !sameImage(cs.Image, d.Image) {
		return false
	}
	for k, v := range d.Env {
		if !slices.Contains(cs.Env, k+"="+v) {
			return false
		}
	}
	return true
}

// WaitService returns once every replica of service id runs its current
// spec, the declared one, and is healthy (a Swarm task is running only once
// its health check passed). It fails as soon as it clearly will not: Swarm
// rolled the service back from the declared spec or paused its update, the
// spec is not the declared one for another reason, a task cannot be placed
// on any node, or tasks keep failing. The error carries the tasks' errors
// and the service's last log lines. After within it fails with the same.
//
// Tasks keep failing when three of the current spec failed since the
// client was made, in this run of the program. Swarm keeps a service's
// failed tasks, and ones from before say nothing of now: a tenant's app
// fails its tasks while its database's node is drained, and serves again
// once the node is back, in the run that follows (seen in TestSwarm).
func (c *Client) WaitService(ctx context.Context, id string, want Declared, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	pause := FirstPoll
	name := id
	var lastErr string
	var lastAt time.Time // when the task of lastErr failed
	for {
		res, err := c.api.ServiceInspect(ctx, id, client.ServiceInspectOptions{})
		if err != nil {
			if ctx.Err() != nil {
				return c.serviceFailed(ctx, id, fmt.Sprintf("service %s not running within %s", name, within), lastErr)
			}
			return err
		}
		svc := res.Service
		name = svc.Spec.Name
		declared := want.runs(svc.Spec)
		u := svc.UpdateStatus
		switch {
		case u != nil && (!declared && strings.HasPrefix(string(u.State), "rollback") || updateFailed(u, svc.UpdatedAt)):
			what := fmt.Sprintf("service %s update %s: %s", name, strings.ReplaceAll(string(u.State), "_", " "), u.Message)
			if !declared {
				what += " (Swarm put its previous spec back, which keeps running: correct the change and run `pulumi up` again, or " + retryAsIs + " to retry it as it is)"
			}
			return c.serviceFailed(ctx, id, what, lastErr)
		case !declared:
			// Every update through the API clears the update status, so a
			// spec other than the declared one with no rollback under way
			// was set by someone else since the program's update.
			return c.serviceFailed(ctx, id, fmt.Sprintf("service %s runs a spec other than the one declared, changed outside this program: %s puts the declared one back", name, retryAsIs), lastErr)
		}
		tasks, err := c.api.TaskList(ctx, client.TaskListOptions{Filters: make(client.Filters).Add("service", id)})
		if err != nil {
			return err
		}
		replicas := 1
		if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
			replicas = int(*r.Replicas)
		}
		running, failed := 0, 0
		for _, t := range tasks.Items {
			if !sameSpec(t.Spec, svc.Spec.TaskTemplate) {
				continue
			}
			switch st := t.Status.State; {
			case t.DesiredState == swarm.TaskStateRunning && st == swarm.TaskStateRunning:
				running++
			case st == swarm.TaskStateFailed || st == swarm.TaskStateRejected:
				if t.Status.Timestamp.After(c.since) {
					failed++
				}
				if !t.Status.Timestamp.Before(lastAt) {
					lastAt = t.Status.Timestamp
					lastErr = fmt.Sprintf("task %s: %s: %s", t.ID[:min(12, len(t.ID))], st, t.Status.Err)
				}
			case st == swarm.TaskStatePending && t.Status.Err != "" && time.Since(t.Status.Timestamp) > 2*time.Second:
				return c.serviceFailed(ctx, id, fmt.Sprintf("service %s cannot be placed: %s", name, t.Status.Err), lastErr)
			}
		}
		updating := u != nil && u.State == swarm.UpdateStateUpdating
		if running >= replicas && !updating {
			return nil
		}
		if failed >= 3 {
			return c.serviceFailed(ctx, id, fmt.Sprintf("service %s: %d tasks of its current version failed", name, failed), lastErr)
		}
		select {
		case <-ctx.Done():
			return c.serviceFailed(ctx, id, fmt.Sprintf("service %s not running within %s (%d of %d replicas)", name, within, running, replicas), lastErr)
		case <-time.After(pause):
		}
		pause = min(pause*3/2, MaxPoll)
	}
}

// sameImage reports whether two image references name the same image: by
// digest where both have one (the engine may add one to a tag), else by
// the whole reference.
func sameImage(a, b string) bool {
	_, da, okA := strings.Cut(a, "@")
	_, db, okB := strings.Cut(b, "@")
	if okA && okB {
		return da == db
	}
	return a == b || strings.HasPrefix(a, b+"@") || strings.HasPrefix(b, a+"@")
}

// serviceFailed builds WaitService's error: what, the last task error and
// the service's last log lines.
func (c *Client) serviceFailed(ctx context.Context, id, what, lastErr string) error {
	logs, err := c.ServiceLogs(context.WithoutCancel(ctx), id, 30)
	if err != nil {
		logs = "(its log could not be read: " + err.Error() + ")"
	}
	return fmt.Errorf("%s; last task error: %s; its last log lines:\n%s", what, orNothing(lastErr), orNothing(logs))
}

// ServiceLogs returns the last lines of a service's tasks' output.
func (c *Client) ServiceLogs(ctx context.Context, id string, lines int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := c.api.ServiceInspect(ctx, id, client.ServiceInspectOptions{})
	if err != nil {
		return "", err
	}
	cs := res.Service.Spec.TaskTemplate.ContainerSpec
	rc, err := c.api.ServiceLogs(ctx, id, client.ServiceLogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(lines)})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return readStream(rc, cs != nil && cs.TTY)
}

// sameSpec reports whether a task's spec is its service's task template: a
// task's spec is a copy of the template when it was made, but for Runtime,
// which the engine fills in on the service's side only (seen on Docker
// 20.10).
func sameSpec(task, template swarm.TaskSpec) bool {
	task.Runtime, template.Runtime = "", ""
	return reflect.DeepEqual(task, template)
}
