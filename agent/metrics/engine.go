package metrics

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Engine reads the Docker engine's API, and only reads it: every call is a
// GET. Requests carry no API version, so the engine answers in its own,
// whatever it is; the fields read here are the same in all of them.
type Engine struct {
	client *http.Client
}

// NewEngine reaches the engine at addr, unix:///path/to/docker.sock.
func NewEngine(addr string) (*Engine, error) {
	path, ok := strings.CutPrefix(addr, "unix://")
	if !ok || path == "" {
		return nil, fmt.Errorf("engine %q: use unix:///path/to/docker.sock", addr)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns: 2,
	}
	return &Engine{client: &http.Client{Transport: tr}}, nil
}

// get decodes the JSON the engine answers GET path?query with into v.
func (e *Engine) get(ctx context.Context, path string, query url.Values, v any) error {
	resp, err := e.do(ctx, path, query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("engine GET %s: %w", path, err)
	}
	return nil
}

func (e *Engine) do(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path+"?"+query.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("engine GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("engine GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

// filters encodes the engine's filters parameter.
func filters(f map[string][]string) url.Values {
	b, _ := json.Marshal(f)
	return url.Values{"filters": {string(b)}}
}

// Container is a container as the engine lists it.
type Container struct {
	ID     string            `json:"Id"`
	Labels map[string]string `json:"Labels"`
	// State is created, running, restarting, exited, ...; Status says
	// more, with the health: "Up 3 minutes (healthy)".
	State  string `json:"State"`
	Status string `json:"Status"`
}

// Containers lists every container, running or not, carrying label.
func (e *Engine) Containers(ctx context.Context, label string) ([]Container, error) {
	var out []Container
	q := filters(map[string][]string{"label": {label}})
	q.Set("all", "1")
	return out, e.get(ctx, "/containers/json", q, &out)
}

// Service is a Swarm service as the engine lists it.
type Service struct {
	ID   string `json:"ID"`
	Spec struct {
		Name   string            `json:"Name"`
		Labels map[string]string `json:"Labels"`
		Mode   struct {
			Replicated *struct {
				Replicas *uint64 `json:"Replicas"`
			} `json:"Replicated"`
		} `json:"Mode"`
	} `json:"Spec"`
}

// Services lists the Swarm services carrying label.
func (e *Engine) Services(ctx context.Context, label string) ([]Service, error) {
	var out []Service
	return out, e.get(ctx, "/services", filters(map[string][]string{"label": {label}}), &out)
}

// Task is a Swarm task: one replica's run of a service.
type Task struct {
	ID           string `json:"ID"`
	ServiceID    string `json:"ServiceID"`
	DesiredState string `json:"DesiredState"`
	Status       struct {
		State string `json:"State"`
	} `json:"Status"`
}

// Tasks lists the tasks of the services named, with the history Swarm
// keeps of each.
func (e *Engine) Tasks(ctx context.Context, services []string) ([]Task, error) {
	var out []Task
	if len(services) == 0 {
		return out, nil
	}
	return out, e.get(ctx, "/tasks", filters(map[string][]string{"service": services}), &out)
}

// Event is a container event.
type Event struct {
	Action string `json:"Action"`
	Actor  struct {
		ID         string            `json:"ID"`
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
}

// Starts calls f with each container carrying label that starts from now
// on, until ctx ends or the stream breaks.
func (e *Engine) Starts(ctx context.Context, label string, f func(Event)) error {
	q := filters(map[string][]string{"type": {"container"}, "event": {"start"}, "label": {label}})
	resp, err := e.do(ctx, "/events", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("engine events: %w", err)
		}
		f(ev)
	}
}
