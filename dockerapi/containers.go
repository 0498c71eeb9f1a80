package dockerapi

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
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
	// TTY says the container's output is one raw stream, not multiplexed.
	TTY bool
}

// Inspect reads a container's state.
func (c *Client) Inspect(ctx context.Context, id string) (Container, error) {
	res, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return Container{}, err
	}
	raw := res.Container
	ct := Container{Name: strings.TrimPrefix(raw.Name, "/"), RestartCount: raw.RestartCount}
	if s := raw.State; s != nil {
		ct.Status, ct.ExitCode = string(s.Status), s.ExitCode
		if h := s.Health; h != nil {
			ct.Health = string(h.Status)
			if n := len(h.Log); n > 0 && h.Log[n-1] != nil {
				ct.HealthLog = strings.TrimSpace(h.Log[n-1].Output)
			}
		}
	}
	if cfg := raw.Config; cfg != nil {
		ct.TTY = cfg.Tty
		if hc := cfg.Healthcheck; hc != nil {
			ct.Test = hc.Test
		}
	}
	return ct, nil
}

// Exec runs cmd in the running container and returns its exit code and its
// combined output.
func (c *Client) Exec(ctx context.Context, id string, cmd []string) (int, string, error) {
	created, err := c.api.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, "", err
	}
	att, err := c.api.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return 0, "", err
	}
	// The attached stream is not tied to ctx: a check that hangs must not
	// hold the caller past its deadline.
	stop := context.AfterFunc(ctx, att.Close)
	out, err := readStream(att.Reader, false)
	stop()
	att.Close()
	if err != nil {
		return 0, "", fmt.Errorf("exec in %s: read its output: %w", id, err)
	}
	inspect, err := c.api.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
	if err != nil {
		return 0, "", err
	}
	if inspect.Running {
		return 0, "", fmt.Errorf("exec in %s still running after its output closed", id)
	}
	return inspect.ExitCode, out, nil
}

// ReadFile returns a regular file of a container, up to 1 MiB, through
// the engine's archive API (what `docker cp` uses): no process starts in
// the container.
func (c *Client) ReadFile(ctx context.Context, id, path string) ([]byte, error) {
	res, err := c.api.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, err
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	h, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", path, id, err)
	}
	if h.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("%s in %s is not a regular file", path, id)
	}
	return io.ReadAll(io.LimitReader(tr, 1<<20))
}

// Logs returns the last lines of a container's output.
func (c *Client) Logs(ctx context.Context, id string, lines int) (string, error) {
	ct, err := c.Inspect(ctx, id)
	if err != nil {
		return "", err
	}
	rc, err := c.api.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(lines)})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return readStream(rc, ct.TTY)
}

// readStream reads up to 1 MiB of an engine's output stream as text:
// demultiplexed (stdout and stderr frames, in order), unless it comes from
// a TTY and so is one raw stream. What was read before an error is kept.
func readStream(r io.Reader, tty bool) (string, error) {
	var b strings.Builder
	r = io.LimitReader(r, 1<<20)
	var err error
	if tty {
		_, err = io.Copy(&b, r)
	} else {
		_, err = stdcopy.StdCopy(&b, &b, r)
	}
	if err != nil && b.Len() == 0 {
		return "", err
	}
	return strings.TrimSpace(b.String()), nil
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
	res, err := c.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: labelFilter(labels)})
	if err != nil {
		return nil, err
	}
	out := make([]ContainerSummary, 0, len(res.Items))
	for _, r := range res.Items {
		s := ContainerSummary{ID: r.ID, Labels: r.Labels, State: string(r.State), Health: healthOf(r.Status)}
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
