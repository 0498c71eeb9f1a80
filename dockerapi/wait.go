package dockerapi

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Wait looks at a starting container after FirstPoll, then ever less often,
// up to every MaxPoll: each look may run the health check in the container,
// and dozens of tenants starting at once must not spend the host's CPU on
// probing instead of starting.
const (
	FirstPoll = 250 * time.Millisecond
	MaxPoll   = time.Second
)

// Probes bounds the health-check commands Wait runs at once, over every
// container the program waits for. Each is a process the engine starts in
// the container, a tenth to a third of a CPU-second here: a cold `pulumi up`
// of 100 tenants probed 100 starting databases every second, asking a
// 2-core host for many times what it has, and some databases were not
// ready within their 3 minutes (twice in make bench-compose at N=100).
// With this bound probing costs at most a few cores' worth however many
// tenants start, and each container is still probed every few seconds.
const Probes = 4

var probeSlots = make(chan struct{}, Probes)

// Wait returns once container id is healthy, and fails as soon as it is
// clearly not going to be: it exited or restarted (the error carries its
// exit status and last log lines), the engine marked it unhealthy, or
// within passed (the error carries the last health check's output).
//
// It does not wait for the engine's own first health check, which runs only
// one interval after start (Docker API 1.41 has no start interval): while
// the engine says "starting", Wait runs the container's health check command
// itself, first after FirstPoll and then backing off to MaxPoll, and a
// passing run is healthy. The engine's interval can so stay long, which
// keeps idle tenants cheap.
func (c *Client) Wait(ctx context.Context, id string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last string
	name := id
	pause := FirstPoll
	for {
		ct, err := c.Inspect(ctx, id)
		if err != nil {
			return timedOut(ctx, err, name, last, within)
		}
		name = ct.Name
		switch {
		case ct.Health == "healthy":
			return nil
		case ct.Status == "exited" || ct.Status == "dead" || ct.RestartCount > 0:
			logs, _ := c.Logs(context.WithoutCancel(ctx), id, 30)
			return fmt.Errorf("container %s exited with status %d (restarted %d times); its last log lines:\n%s", ct.Name, ct.ExitCode, ct.RestartCount, logs)
		case ct.Health == "unhealthy":
			return fmt.Errorf("container %s is unhealthy; its last health check said:\n%s", ct.Name, orNothing(ct.HealthLog))
		case ct.Health == "":
			return fmt.Errorf("container %s has no health check to wait for", ct.Name)
		}
		if ct.Status == "running" {
			if cmd := command(ct.Test); cmd != nil {
				code, out, err := c.probe(ctx, id, cmd)
				switch {
				case err == nil && code == 0:
					return nil
				case err == nil:
					last = fmt.Sprintf("exit status %d: %s", code, orNothing(out))
				case ctx.Err() != nil && last != "":
					// A check cut short by the deadline says nothing about
					// the container: the one before it is the last word.
				default:
					last = err.Error()
				}
			}
		}
		select {
		case <-ctx.Done():
			return timedOut(ctx, ctx.Err(), name, last, within)
		case <-time.After(pause):
		}
		pause = min(pause*3/2, MaxPoll)
	}
}

// probe runs a health-check command in container id once one of the
// Probes slots is free.
func (c *Client) probe(ctx context.Context, id string, cmd []string) (int, string, error) {
	select {
	case probeSlots <- struct{}{}:
	case <-ctx.Done():
		return 0, "", ctx.Err()
	}
	defer func() { <-probeSlots }()
	return c.Exec(ctx, id, cmd)
}

// timedOut turns an error after the deadline into one that says so, with
// the last health check's output.
func timedOut(ctx context.Context, err error, name, last string, within time.Duration) error {
	if ctx.Err() == nil {
		return err
	}
	return fmt.Errorf("container %s not healthy within %s; its last health check said:\n%s", name, within, orNothing(last))
}

// command turns a health check's Test into an exec command line.
func command(test []string) []string {
	if len(test) < 2 {
		return nil
	}
	switch test[0] {
	case "CMD":
		return test[1:]
	case "CMD-SHELL":
		return []string{"/bin/sh", "-c", strings.Join(test[1:], " ")}
	}
	return nil
}

func orNothing(s string) string {
	if strings.TrimSpace(s) == "" {
		return "(nothing)"
	}
	return s
}
