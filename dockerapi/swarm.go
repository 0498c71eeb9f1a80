package dockerapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
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
	var raw []struct {
		ID          string
		Description struct{ Hostname string }
		Spec        struct {
			Availability string
			Labels       map[string]string
		}
		Status struct{ State string }
	}
	if err := c.do(ctx, "GET", "/nodes", nil, nil, &raw); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusServiceUnavailable {
			return nil, fmt.Errorf("%w (%s)", ErrNotManager, e.Message)
		}
		return nil, err
	}
	nodes := make([]Node, 0, len(raw))
	for _, r := range raw {
		nodes = append(nodes, Node{ID: r.ID, Hostname: r.Description.Hostname, Ready: r.Status.State == "ready", Availability: r.Spec.Availability, Labels: r.Spec.Labels})
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Hostname < nodes[j].Hostname })
	return nodes, nil
}

// LabelNode sets label key to value on the node with the given hostname,
// unless it has it already. Node updates are versioned: one that raced
// another update is retried.
func (c *Client) LabelNode(ctx context.Context, hostname, key, value string) error {
	for attempt := 0; ; attempt++ {
		var nodes []struct {
			ID          string
			Version     struct{ Index uint64 }
			Description struct{ Hostname string }
			Spec        map[string]any
		}
		if err := c.do(ctx, "GET", "/nodes", nil, nil, &nodes); err != nil {
			return err
		}
		found := false
		for _, n := range nodes {
			if n.Description.Hostname != hostname {
				continue
			}
			found = true
			labels, _ := n.Spec["Labels"].(map[string]any)
			if labels == nil {
				labels = map[string]any{}
			}
			if labels[key] == value {
				return nil
			}
			labels[key] = value
			n.Spec["Labels"] = labels
			err := c.do(ctx, "POST", "/nodes/"+url.PathEscape(n.ID)+"/update", url.Values{"version": {strconv.FormatUint(n.Version.Index, 10)}}, n.Spec, nil)
			var e *Error
			if errors.As(err, &e) && strings.Contains(e.Message, "out of sequence") && attempt < 10 {
				break
			}
			return err
		}
		if !found {
			return fmt.Errorf("no Swarm node has hostname %q", hostname)
		}
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
	header := http.Header{}
	if auth != nil {
		b, _ := json.Marshal(map[string]string{"username": auth.Username, "password": auth.Password, "serveraddress": auth.ServerAddress})
		header.Set("X-Registry-Auth", base64.URLEncoding.EncodeToString(b))
	}
	var out struct{ Descriptor struct{ Digest string } }
	if err := c.doWith(ctx, "GET", "/distribution/"+ref+"/json", nil, header, nil, &out); err != nil {
		return "", err
	}
	if out.Descriptor.Digest == "" {
		return "", fmt.Errorf("the registry gave no digest for %s", ref)
	}
	return out.Descriptor.Digest, nil
}

// Service is a Swarm service, as far as the program needs it.
type Service struct {
	ID     string
	Name   string
	Labels map[string]string
}

// Services lists the services that carry every label given.
func (c *Client) Services(ctx context.Context, labels map[string]string) ([]Service, error) {
	var raw []struct {
		ID   string
		Spec struct {
			Name   string
			Labels map[string]string
		}
	}
	if err := c.do(ctx, "GET", "/services", url.Values{"filters": {labelFilter(labels)}}, nil, &raw); err != nil {
		return nil, err
	}
	out := make([]Service, 0, len(raw))
	for _, r := range raw {
		out = append(out, Service{ID: r.ID, Name: r.Spec.Name, Labels: r.Spec.Labels})
	}
	return out, nil
}

func labelFilter(labels map[string]string) string {
	var l []string
	for k, v := range labels {
		l = append(l, k+"="+v)
	}
	sort.Strings(l)
	b, _ := json.Marshal(map[string][]string{"label": l})
	return string(b)
}

// service and task are the parts of the engine's answers WaitService reads.
type service struct {
	ID   string
	Spec struct {
		Name         string
		TaskTemplate json.RawMessage
		Mode         struct {
			Replicated *struct{ Replicas int }
		}
	}
	UpdatedAt    time.Time
	UpdateStatus *updateStatus
}

// updateStatus is a service's last rolling update, as the engine reports it.
type updateStatus struct {
	State                  string
	Message                string
	StartedAt, CompletedAt time.Time
}

// failed reports whether the update was paused, or is rolling back, and
// that is still the service's last word: Swarm keeps an update's status
// after the spec is updated again, so a status older than the service's
// last update is stale. (A completed rollback is judged by the image the
// spec went back to, as a rollback itself updates the spec.)
func (u *updateStatus) failed(updatedAt time.Time) bool {
	if u == nil || (u.State != "paused" && u.State != "rollback_started" && u.State != "rollback_paused") {
		return false
	}
	last := u.StartedAt
	if u.CompletedAt.After(last) {
		last = u.CompletedAt
	}
	return !updatedAt.After(last)
}

type task struct {
	ID           string
	NodeID       string
	Spec         json.RawMessage
	DesiredState string
	Status       struct {
		Timestamp time.Time
		State     string
		Message   string
		Err       string
	}
}

// WaitService returns once every replica of service id runs its current
// spec, with image, and is healthy (a Swarm task is running only once its
// health check passed). It fails as soon as it clearly will not: Swarm
// rolled the service back from image or paused its update, a task cannot
// be placed on any node, or tasks keep failing. The error carries the
// tasks' errors and the service's last log lines. After within it fails
// with the same.
func (c *Client) WaitService(ctx context.Context, id, image string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	pause := FirstPoll
	name := id
	var lastErr string
	for {
		var svc service
		if err := c.do(ctx, "GET", "/services/"+url.PathEscape(id), nil, nil, &svc); err != nil {
			if ctx.Err() != nil {
				return c.serviceFailed(ctx, id, fmt.Sprintf("service %s not running within %s", name, within), lastErr)
			}
			return err
		}
		name = svc.Spec.Name
		var template struct{ ContainerSpec struct{ Image string } }
		_ = json.Unmarshal(svc.Spec.TaskTemplate, &template)
		rolledBack := !sameImage(template.ContainerSpec.Image, image)
		if u := svc.UpdateStatus; u != nil && (rolledBack && strings.HasPrefix(u.State, "rollback") || u.failed(svc.UpdatedAt)) {
			return c.serviceFailed(ctx, id, fmt.Sprintf("service %s update %s: %s", name, strings.ReplaceAll(u.State, "_", " "), u.Message), lastErr)
		}
		var tasks []task
		q := url.Values{"filters": {`{"service":[` + strconv.Quote(id) + `]}`}}
		if err := c.do(ctx, "GET", "/tasks", q, nil, &tasks); err != nil {
			return err
		}
		want := 1
		if r := svc.Spec.Mode.Replicated; r != nil {
			want = r.Replicas
		}
		running, failed := 0, 0
		for _, t := range tasks {
			if !sameSpec(t.Spec, svc.Spec.TaskTemplate) {
				continue
			}
			switch {
			case t.DesiredState == "running" && t.Status.State == "running":
				running++
			case t.Status.State == "failed" || t.Status.State == "rejected":
				failed++
				lastErr = fmt.Sprintf("task %s: %s: %s", t.ID[:min(12, len(t.ID))], t.Status.State, t.Status.Err)
			case t.Status.State == "pending" && t.Status.Err != "" && time.Since(t.Status.Timestamp) > 2*time.Second:
				return c.serviceFailed(ctx, id, fmt.Sprintf("service %s cannot be placed: %s", name, t.Status.Err), lastErr)
			}
		}
		updating := svc.UpdateStatus != nil && svc.UpdateStatus.State == "updating"
		if running >= want && !updating && !rolledBack {
			return nil
		}
		if failed >= 3 {
			return c.serviceFailed(ctx, id, fmt.Sprintf("service %s: %d tasks of its current version failed", name, failed), lastErr)
		}
		select {
		case <-ctx.Done():
			return c.serviceFailed(ctx, id, fmt.Sprintf("service %s not running within %s (%d of %d replicas)", name, within, running, want), lastErr)
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
	return c.logs(ctx, "/services/"+url.PathEscape(id)+"/logs", lines)
}

// sameSpec reports whether a task's spec is its service's task template: a
// task's spec is a copy of the template when it was made, but for Runtime,
// which the engine fills in on the service's side only.
func sameSpec(task, template json.RawMessage) bool {
	var x, y map[string]any
	if json.Unmarshal(task, &x) != nil || json.Unmarshal(template, &y) != nil {
		return false
	}
	delete(x, "Runtime")
	delete(y, "Runtime")
	return reflect.DeepEqual(x, y)
}
