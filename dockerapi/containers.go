package dockerapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/polls-tenants/polls/dockerlog"
)

// Container is what the watcher reads of a container.
type Container struct {
	Name         string
	Status       string // created, running, restarting, exited, dead, ...
	ExitCode     int
	RestartCount int
	// Health is "", "starting", "healthy" or "unhealthy".
	Health string
	// HealthLog is the output of the engine's last health check, if any.
	HealthLog string
	// Test is the container's health check command, as configured.
	Test []string
}

// Inspect reads a container's state.
func (c *Client) Inspect(ctx context.Context, id string) (Container, error) {
	var raw struct {
		Name         string
		RestartCount int
		State        struct {
			Status   string
			ExitCode int
			Health   *struct {
				Status string
				Log    []struct {
					ExitCode int
					Output   string
				}
			}
		}
		Config struct {
			Healthcheck *struct{ Test []string }
		}
	}
	if err := c.do(ctx, "GET", "/containers/"+url.PathEscape(id)+"/json", nil, nil, &raw); err != nil {
		return Container{}, err
	}
	ct := Container{
		Name: strings.TrimPrefix(raw.Name, "/"), Status: raw.State.Status,
		ExitCode: raw.State.ExitCode, RestartCount: raw.RestartCount,
	}
	if h := raw.State.Health; h != nil {
		ct.Health = h.Status
		if n := len(h.Log); n > 0 {
			ct.HealthLog = strings.TrimSpace(h.Log[n-1].Output)
		}
	}
	if hc := raw.Config.Healthcheck; hc != nil {
		ct.Test = hc.Test
	}
	return ct, nil
}

// Exec runs cmd in the running container and returns its exit code and its
// combined output.
func (c *Client) Exec(ctx context.Context, id string, cmd []string) (int, string, error) {
	var created struct{ ID string }
	if err := c.do(ctx, "POST", "/containers/"+url.PathEscape(id)+"/exec", nil,
		map[string]any{"Cmd": cmd, "AttachStdout": true, "AttachStderr": true}, &created); err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.url("/exec/"+created.ID+"/start", nil),
		strings.NewReader(`{"Detach":false,"Tty":false}`))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("docker engine at %s: %w", c.host, err)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return 0, "", err
	}
	if resp.StatusCode >= 300 {
		return 0, "", &Error{Status: resp.StatusCode, Message: strings.TrimSpace(string(raw))}
	}
	var inspect struct {
		Running  bool
		ExitCode int
	}
	if err := c.do(ctx, "GET", "/exec/"+created.ID+"/json", nil, nil, &inspect); err != nil {
		return 0, "", err
	}
	if inspect.Running {
		return 0, "", fmt.Errorf("exec in %s still running after its output closed", id)
	}
	return inspect.ExitCode, strings.TrimSpace(dockerlog.Demux(string(raw))), nil
}

// Logs returns the last lines of a container's output.
func (c *Client) Logs(ctx context.Context, id string, lines int) (string, error) {
	return c.logs(ctx, "/containers/"+url.PathEscape(id)+"/logs", lines)
}

// logs reads the last lines of a logs endpoint's multiplexed stream.
func (c *Client) logs(ctx context.Context, path string, lines int) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.url(path,
		url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {strconv.Itoa(lines)}}), nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("docker engine at %s: %w", c.host, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil && len(raw) == 0 {
		return "", err
	}
	if resp.StatusCode >= 300 {
		return "", &Error{Status: resp.StatusCode, Message: strings.TrimSpace(string(raw))}
	}
	return strings.TrimSpace(dockerlog.Demux(string(raw))), nil
}

// ContainerSummary is a container as a listing shows it.
type ContainerSummary struct {
	ID     string
	Name   string
	Labels map[string]string
	// State is created, running, exited, ...; Health is "", "starting",
	// "healthy" or "unhealthy".
	State  string
	Health string
}

// Containers lists the containers, running or not, that carry every label
// given.
func (c *Client) Containers(ctx context.Context, labels map[string]string) ([]ContainerSummary, error) {
	var raw []struct {
		ID     string `json:"Id"`
		Names  []string
		Labels map[string]string
		State  string
		Status string
	}
	if err := c.do(ctx, "GET", "/containers/json", url.Values{"all": {"1"}, "filters": {labelFilter(labels)}}, nil, &raw); err != nil {
		return nil, err
	}
	out := make([]ContainerSummary, 0, len(raw))
	for _, r := range raw {
		s := ContainerSummary{ID: r.ID, Labels: r.Labels, State: r.State, Health: healthOf(r.Status)}
		if len(r.Names) > 0 {
			s.Name = strings.TrimPrefix(r.Names[0], "/")
		}
		out = append(out, s)
	}
	return out, nil
}

// healthOf reads the health from a listing's status, e.g. "Up 3 minutes
// (unhealthy)".
func healthOf(status string) string {
	switch {
	case strings.Contains(status, "(healthy)"):
		return "healthy"
	case strings.Contains(status, "(unhealthy)"):
		return "unhealthy"
	case strings.Contains(status, "(health: starting)"):
		return "starting"
	}
	return ""
}
