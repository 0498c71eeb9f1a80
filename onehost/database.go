package onehost

import (
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/tenants"
)

// Database declares the tenant's data volume and PostgreSQL container, and
// resolves once the program has seen it healthy.
func (p *Platform) Database(ctx *pulumi.Context, t tenants.Parts, network pulumi.StringOutput) (pulumi.StringOutput, error) {
	tenant := t.Tenant.Name
	// The volume outlives the tenant's removal from config and `pulumi
	// destroy`: data is deleted only on purpose (`docker volume rm`). Adding
	// the tenant back re-attaches it, as creating an existing volume is a no-op.
	volume, err := docker.NewVolume(ctx, tenant+"-pgdata", &docker.VolumeArgs{
		Name: pulumi.String(t.Name("pgdata")),
		Labels: docker.VolumeLabelArray{
			docker.VolumeLabelArgs{Label: pulumi.String("polls.tenant"), Value: pulumi.String(tenant)},
			docker.VolumeLabelArgs{Label: pulumi.String("polls.retained"), Value: pulumi.String("true")},
		},
	}, append(t.Opts, pulumi.RetainOnDelete(true))...)
	if err != nil {
		return pulumi.StringOutput{}, wrap("data volume", err)
	}
	// With backups on, the database runs the stack's image of
	// polls:postgresImage, whose entrypoint restores when asked to (see
	// agent/cmd/pgstart) and lets the backup agent stream the log.
	image := pulumi.StringInput(pulumi.String(t.Stack.PostgresImage))
	uploads := docker.ContainerUploadArray{
		docker.ContainerUploadArgs{File: pulumi.String(contract.DBPasswordFile), Content: t.Secrets.DBPassword},
	}
	if b := t.Backup; b != nil {
		image = b.DBImage
		if r := b.Restore; r != nil {
			uploads = append(uploads,
				docker.ContainerUploadArgs{File: pulumi.String(contract.RestoreRequestFile), Content: r.Request},
				docker.ContainerUploadArgs{File: pulumi.String(contract.RestoreTokenFile), Content: b.RestoreToken})
		}
	}
	db, err := docker.NewContainer(ctx, tenant+"-db", &docker.ContainerArgs{
		Name:    pulumi.String(t.Name("db")),
		Image:   image,
		Envs:    pulumi.ToStringArray(contract.DatabaseEnv()),
		Uploads: uploads,
		Mounts: docker.ContainerMountArray{
			docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: volume.Name, Target: pulumi.String(contract.PGMount)},
		},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
			docker.ContainerNetworksAdvancedArgs{Name: network, Aliases: pulumi.StringArray{pulumi.String(contract.DBAlias)}},
		},
		// No StartInterval: it needs Docker API 1.44, and Debian 12 ships
		// 1.41. The program probes the check itself while the database
		// starts (see healthy), so the interval only paces later checks
		// (checkEvery).
		Healthcheck: docker.ContainerHealthcheckArgs{
			Tests:       pulumi.StringArray{pulumi.String("CMD-SHELL"), pulumi.String(contract.DatabaseHealthScript)},
			Interval:    pulumi.String(checkEvery),
			Timeout:     pulumi.String("10s"),
			Retries:     pulumi.Int(checkRetries),
			StartPeriod: pulumi.String("2m0s"),
		},
		// PostgreSQL must not be PID 1: a health check that times out
		// leaves its children to PID 1, and the postmaster treats any
		// child it reaps that died by a signal as a crashed backend and
		// restarts every connection (seen here under load: "server process
		// was terminated by signal 13"). Docker's init reaps them instead.
		Init:    pulumi.Bool(true),
		Restart: pulumi.String("unless-stopped"),
		// The image's stop signal (SIGINT, PostgreSQL's fast shutdown),
		// then time to finish: without it the provider kills at once.
		DestroyGraceSeconds: pulumi.Int(30),
		Memory:              platform.Memory(t.Stack.DBMemoryMB),
		MemorySwap:          platform.Memory(t.Stack.DBMemoryMB),
		Labels:              platform.ContainerLabels(t, "db", platform.ExtraLabels(platform.RestoreLabels(t))...),
	}, append(t.Opts, platform.Named, notUpdatedInPlace)...)
	if err != nil {
		return pulumi.StringOutput{}, wrap("container", err)
	}
	return p.healthy(ctx, "tenant "+tenant+": database", db, p.dbWithin), nil
}
