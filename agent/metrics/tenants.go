package metrics

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The labels every object of a stack carries (the program's contract).
const (
	labelStack  = "polls.stack"
	labelTenant = "polls.tenant"
	labelRole   = "polls.role"
)

// roles are the parts of a tenant reported: each should keep running.
var roles = []string{"app", "db", "backup"}

// Platforms: what the engine runs the tenants' apps and databases as.
const (
	PlatformDocker = "docker" // containers
	PlatformSwarm  = "swarm"  // services, whose tasks run on any node
)

// Tenants reports, at each scrape, what the engine says of every tenant's
// parts: how many replicas should run, how many run and are healthy, and
// how often they restarted. On one engine the parts are containers; on
// Swarm the apps and databases are services (their tasks are read from the
// manager, whatever node runs them) and the backup agents containers.
type Tenants struct {
	stack, platform string
	engine          *Engine

	replicas, healthy, restarts, engineUp *prometheus.Desc

	mu sync.Mutex
	// counts are the restarts seen, by tenant and role.
	counts map[[2]string]float64
	// started are the containers seen starting; another start is a
	// restart.
	started map[string]bool
	// failed are the Swarm tasks seen failed, each one restart.
	failed map[string]bool
}

// NewTenants reports stack's tenants as engine sees them.
func NewTenants(stack, platform string, engine *Engine) *Tenants {
	constant := prometheus.Labels{"stack": stack}
	labels := []string{"tenant", "role"}
	return &Tenants{
		stack: stack, platform: platform, engine: engine,
		replicas: prometheus.NewDesc("polls_replicas", "Replicas of a tenant's part (app, db, backup) that should run: its containers, or its Swarm service's replicas.", labels, constant),
		healthy:  prometheus.NewDesc("polls_replicas_healthy", "Replicas of a tenant's part that run and have not failed their health check.", labels, constant),
		restarts: prometheus.NewDesc("polls_restarts_total", "Restarts of a tenant's part seen since the exporter started: a container started again, or a Swarm task that failed.", labels, constant),
		engineUp: prometheus.NewDesc("polls_engine_up", "1 if the exporter's last look at the Docker engine succeeded.", nil, constant),
		counts:   map[[2]string]float64{}, started: map[string]bool{}, failed: map[string]bool{},
	}
}

// Describe sends the descriptions of the metrics.
func (t *Tenants) Describe(ch chan<- *prometheus.Desc) {
	ch <- t.replicas
	ch <- t.healthy
	ch <- t.restarts
	ch <- t.engineUp
}

// part is what is known of one tenant's role.
type part struct{ replicas, healthy int }

// Collect asks the engine and sends the metrics.
func (t *Tenants) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	parts, err := t.look(ctx)
	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(t.engineUp, prometheus.GaugeValue, up)
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, p := range parts {
		ch <- prometheus.MustNewConstMetric(t.replicas, prometheus.GaugeValue, float64(p.replicas), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(t.healthy, prometheus.GaugeValue, float64(p.healthy), k[0], k[1])
		if _, ok := t.counts[k]; !ok {
			t.counts[k] = 0
		}
	}
	for k, n := range t.counts {
		ch <- prometheus.MustNewConstMetric(t.restarts, prometheus.CounterValue, n, k[0], k[1])
	}
}

// look reads every tenant's parts from the engine.
func (t *Tenants) look(ctx context.Context) (map[[2]string]part, error) {
	label := labelStack + "=" + t.stack
	containers, err := t.engine.Containers(ctx, label)
	if err != nil {
		return nil, err
	}
	t.forget(containers)
	parts := map[[2]string]part{}
	for _, c := range containers {
		k := [2]string{c.Labels[labelTenant], c.Labels[labelRole]}
		if k[0] == "" || !slices.Contains(roles, k[1]) {
			continue
		}
		p := parts[k]
		p.replicas++
		// A container counts from its start, before the engine's first
		// check, which on one host comes minutes later (onehost's
		// checkEvery): `pulumi up` ran the check itself before it routed
		// to a container it started, and one that fails again once
		// running turns unhealthy.
		if c.State == "running" && !strings.Contains(c.Status, "(unhealthy)") {
			p.healthy++
		}
		parts[k] = p
	}
	if t.platform != PlatformSwarm {
		return parts, nil
	}
	services, err := t.engine.Services(ctx, label)
	if err != nil {
		return nil, err
	}
	ours := map[string][2]string{}
	var ids []string
	for _, s := range services {
		k := [2]string{s.Spec.Labels[labelTenant], s.Spec.Labels[labelRole]}
		if k[0] == "" || !slices.Contains(roles, k[1]) {
			continue
		}
		p := parts[k]
		if r := s.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
			p.replicas += int(*r.Replicas)
		}
		parts[k] = p
		ours[s.ID] = k
		ids = append(ids, s.ID)
	}
	tasks, err := t.engine.Tasks(ctx, ids)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	present := map[string]bool{}
	for _, task := range tasks {
		present[task.ID] = true
	}
	for id := range t.failed {
		if !present[id] {
			delete(t.failed, id)
		}
	}
	for _, task := range tasks {
		k, ok := ours[task.ServiceID]
		if !ok {
			continue
		}
		// A task is running only once its health check passed, and
		// Swarm replaces one that turns unhealthy.
		if task.DesiredState == "running" && task.Status.State == "running" {
			p := parts[k]
			p.healthy++
			parts[k] = p
		}
		if (task.Status.State == "failed" || task.Status.State == "rejected") && !t.failed[task.ID] {
			t.failed[task.ID] = true
			t.counts[k]++
		}
	}
	return parts, nil
}

// WatchRestarts counts the restarts of the stack's containers: a start of
// a container that was seen running before, until ctx ends. It reconnects
// when the engine's event stream breaks.
func (t *Tenants) WatchRestarts(ctx context.Context, logf func(string, ...any)) {
	label := labelStack + "=" + t.stack
	for ctx.Err() == nil {
		// The containers running now have started once; their next
		// start is a restart. The stream opens before the list is read,
		// so no start falls between them.
		events := make(chan Event, 64)
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- t.engine.Starts(sctx, label, func(ev Event) { events <- ev }) }()
		if list, err := t.engine.Containers(sctx, label); err == nil {
			t.mu.Lock()
			for _, c := range list {
				if c.State == "running" || c.State == "restarting" || c.State == "exited" {
					t.started[c.ID] = true
				}
			}
			t.mu.Unlock()
		}
	stream:
		for {
			select {
			case ev := <-events:
				t.start(ev)
			case err := <-done:
				if ctx.Err() == nil {
					logf("engine events: %v; reconnecting", err)
				}
				break stream
			}
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// forget drops the containers that are gone from those seen starting.
func (t *Tenants) forget(containers []Container) {
	present := map[string]bool{}
	for _, c := range containers {
		present[c.ID] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.started {
		if !present[id] {
			delete(t.started, id)
		}
	}
}

// start records a container's start.
func (t *Tenants) start(ev Event) {
	k := [2]string{ev.Actor.Attributes[labelTenant], ev.Actor.Attributes[labelRole]}
	if k[0] == "" || !slices.Contains(roles, k[1]) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started[ev.Actor.ID] {
		t.counts[k]++
	}
	t.started[ev.Actor.ID] = true
}
