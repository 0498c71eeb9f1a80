package main

import (
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/backups"
	"github.com/polls-tenants/polls/monitoring"
	"github.com/polls-tenants/polls/router"
	"github.com/polls-tenants/polls/spec"
)

// declareMonitoring declares the stack's metrics and alerts (package
// monitoring) and exports where to see them: monitoringUrl, Prometheus'
// UI, and monitoringTargets, what an operator's own Prometheus scrapes.
func declareMonitoring(ctx *pulumi.Context, s spec.Stack, engine Engine, prefix string, agent *docker.Image, r *router.Router, b *backups.Backups, opts ...pulumi.ResourceOption) (*monitoring.Monitoring, error) {
	names := make([]string, len(s.Tenants))
	for i, t := range s.Tenants {
		names[i] = t.Name
	}
	args := monitoring.Args{Stack: s, Prefix: prefix, Tenants: names, AgentImage: agent.RepoDigest, RouterMetrics: r.MetricsVolume, Engine: engine}
	if b != nil {
		args.BackupNetwork = b.Network
	}
	if s.ACME != nil {
		args.ACMEState = r.ACMEState
	}
	m, err := monitoring.New(ctx, "monitoring", args, opts...)
	if err != nil {
		return nil, err
	}
	if s.Monitoring.Prometheus {
		ctx.Export("monitoringUrl", m.URL)
	}
	ctx.Export("monitoringTargets", m.Targets)
	return m, nil
}
