package swarm

import (
	"context"
	"fmt"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/tenants"
)

// Database declares the tenant's PostgreSQL: one replica pinned to its node
// (Platform.Nodes), its data on a volume Swarm creates on that node on first
// start and never deletes (labelled polls.retained), its password a Docker
// secret. It resolves once the task runs and is healthy.
func (p *Platform) Database(ctx *pulumi.Context, t tenants.Parts, network pulumi.StringOutput) (pulumi.StringOutput, error) {
	tenant := t.Tenant.Name
	node, ok := p.Nodes[tenant]
	if !ok {
		return pulumi.StringOutput{}, fmt.Errorf("no node planned for tenant %s", tenant)
	}
	password, err := secret(ctx, t, "db-password-secret", contract.DBPasswordFile, t.Secrets.DBPassword)
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	secrets := docker.ServiceTaskSpecContainerSpecSecretArray{password}
	// With backups on, the database runs the stack's image of
	// polls:postgresImage, pushed to polls:registry (see onehost).
	image := p.image(pulumi.String(t.Stack.PostgresImage))
	auth := p.auth(pulumi.String(t.Stack.PostgresImage))
	extra := map[string]pulumi.StringInput{"polls.node": pulumi.String(node)}
	if t.SecretsLabel {
		extra[contract.LabelSecrets] = pulumi.String(contract.SecretsDerived)
	}
	if b := t.Backup; b != nil {
		image, auth = b.DBImage, p.auth(b.DBImage)
		if r := b.Restore; r != nil {
			for _, f := range []struct {
				logical, file string
				value         pulumi.StringOutput
			}{{"restore-request-secret", contract.RestoreRequestFile, r.Request}, {"restore-token-secret", contract.RestoreTokenFile, b.RestoreToken}} {
				s, err := secret(ctx, t, f.logical, f.file, f.value)
				if err != nil {
					return pulumi.StringOutput{}, err
				}
				secrets = append(secrets, s)
			}
			extra["polls.restore"] = pulumi.String(r.ID)
		}
	}
	task := docker.ServiceTaskSpecArgs{
		ContainerSpec: docker.ServiceTaskSpecContainerSpecArgs{
			Image:   image,
			Env:     env(contract.DatabaseEnv()),
			Secrets: secrets,
			Mounts: docker.ServiceTaskSpecContainerSpecMountArray{docker.ServiceTaskSpecContainerSpecMountArgs{
				Type: pulumi.String("volume"), Source: pulumi.String(t.Name("pgdata")), Target: pulumi.String(contract.PGMount),
				VolumeOptions: docker.ServiceTaskSpecContainerSpecMountVolumeOptionsArgs{
					Labels: docker.ServiceTaskSpecContainerSpecMountVolumeOptionsLabelArray{
						// Sorted by label, as the provider reads them back:
						// another order is a change on every preview.
						docker.ServiceTaskSpecContainerSpecMountVolumeOptionsLabelArgs{Label: pulumi.String("polls.retained"), Value: pulumi.String("true")},
						docker.ServiceTaskSpecContainerSpecMountVolumeOptionsLabelArgs{Label: pulumi.String("polls.tenant"), Value: pulumi.String(tenant)},
					},
				},
			}},
			// A task is running only once its health check passed, and
			// Swarm runs the first check one interval after start (API
			// 1.41 has no start interval): the interval is what a
			// database start or a rolling update waits at least.
			Healthcheck: docker.ServiceTaskSpecContainerSpecHealthcheckArgs{
				Tests:    pulumi.StringArray{pulumi.String("CMD-SHELL"), pulumi.String(contract.DatabaseHealthScript)},
				Interval: pulumi.String("3s"),
				Timeout:  pulumi.String("10s"),
				Retries:  pulumi.Int(5),
				// "2m", not "2m0s": the provider reads durations back
				// in this form, and another is a change every time.
				StartPeriod: pulumi.String("2m"),
			},
			// SIGINT is PostgreSQL's fast shutdown: it disconnects the
			// clients and stops cleanly in a second, where SIGTERM waits
			// for every app connection to close. Swarm kills after the
			// grace period.
			StopSignal:      pulumi.String("SIGINT"),
			StopGracePeriod: pulumi.String("30s"),
		},
		NetworksAdvanceds: docker.ServiceTaskSpecNetworksAdvancedArray{
			docker.ServiceTaskSpecNetworksAdvancedArgs{Name: network, Aliases: pulumi.StringArray{pulumi.String(contract.DBAlias)}},
		},
		Placement: docker.ServiceTaskSpecPlacementArgs{
			Constraints: pulumi.StringArray{pulumi.String("node.hostname==" + node)},
		},
		Resources: docker.ServiceTaskSpecResourcesArgs{
			Limits: docker.ServiceTaskSpecResourcesLimitsArgs{MemoryBytes: memoryBytes(t.Stack.DBMemoryMB)},
		},
	}
	db, err := docker.NewService(ctx, tenant+"-db", &docker.ServiceArgs{
		Name:     pulumi.String(t.Name("db")),
		Labels:   labels(t, "db", extra),
		Auth:     auth,
		Mode:     docker.ServiceModeArgs{Replicated: docker.ServiceModeReplicatedArgs{Replicas: pulumi.Int(1)}},
		TaskSpec: task,
		// One data directory, one server: a new version stops the old
		// task before it starts (Swarm's default order, said here).
		UpdateConfig: docker.ServiceUpdateConfigArgs{Order: pulumi.String("stop-first")},
		EndpointSpec: docker.ServiceEndpointSpecArgs{Mode: pulumi.String("dnsrr")},
	}, append(t.Opts, platform.Named)...)
	if err != nil {
		return pulumi.StringOutput{}, fmt.Errorf("service: %w", err)
	}
	// Once it runs, its node holds its data: say so on the node. A node
	// that held an older copy (the database was restored elsewhere from
	// its backups) no longer does.
	remember := func(ctx context.Context) error {
		if err := p.Engine.LabelNode(ctx, node, DataLabel(t.Prefix, tenant), "true"); err != nil {
			return fmt.Errorf("label node %s as holding its data: %w", node, err)
		}
		for _, old := range p.data[tenant] {
			if old == node {
				continue
			}
			if err := p.Engine.UnlabelNode(ctx, old, DataLabel(t.Prefix, tenant)); err != nil {
				return fmt.Errorf("node %s no longer holds its data: %w", old, err)
			}
		}
		return nil
	}
	// A failed update pauses (Swarm's default failure action), which the
	// wait tells: a database is never rolled back, so its template needs
	// no digest of itself.
	return p.running(ctx, "tenant "+tenant+": database (pinned to node "+node+")", db, image, pulumi.String(""), p.dbWithin, remember), nil
}
