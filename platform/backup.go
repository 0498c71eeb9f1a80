package platform

import (
	"fmt"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/tenants"
)

// BackupAgent declares the tenant's backup agent: a container on the engine
// the program talks to (on Swarm, a manager, attached to the tenant's
// overlay network), so that its status, health and drills are one `docker
// exec` away on either platform. It joins the tenant's private network,
// where it streams the database's write-ahead log and serves the database
// its restores, and the backup network, where it reaches the repository
// gateway. Its secrets are files; its spool volume keeps the log it has
// received and not yet sent across a replacement. All the stack's agents
// share one more volume, the engine's base backup slots: they are all on
// this one engine, and at most a few of them take a base backup at once.
func BackupAgent(ctx *pulumi.Context, t tenants.Parts, network pulumi.StringOutput) error {
	b := t.Backup
	tenant := t.Tenant.Name
	spool, err := docker.NewVolume(ctx, tenant+"-backup-spool", &docker.VolumeArgs{
		Name: pulumi.String(t.Name("backup-spool")),
		Labels: docker.VolumeLabelArray{
			docker.VolumeLabelArgs{Label: pulumi.String(contract.LabelStack), Value: pulumi.String(t.Prefix)},
			docker.VolumeLabelArgs{Label: pulumi.String(contract.LabelTenant), Value: pulumi.String(tenant)},
		},
	}, t.Opts...)
	if err != nil {
		return fmt.Errorf("spool volume: %w", err)
	}
	_, err = docker.NewContainer(ctx, tenant+"-backup", &docker.ContainerArgs{
		Name:        pulumi.String(contract.AgentName(t.Prefix, tenant)),
		Image:       b.AgentImage,
		Entrypoints: pulumi.ToStringArray(contract.AgentEntrypoint),
		Command:     pulumi.ToStringArray(contract.AgentCommand),
		Uploads: docker.ContainerUploadArray{
			docker.ContainerUploadArgs{File: pulumi.String(contract.AgentConfigFile), Content: pulumi.String(b.Config)},
			docker.ContainerUploadArgs{File: pulumi.String(contract.DBPasswordFile), Content: t.Secrets.DBPassword},
			docker.ContainerUploadArgs{File: pulumi.String(contract.AgentRepositoryFile), Content: b.RepositoryURL},
			docker.ContainerUploadArgs{File: pulumi.String(contract.AgentRepoKeyFile), Content: b.RepoKey},
			docker.ContainerUploadArgs{File: pulumi.String(contract.AgentRestoreTokenFile), Content: b.RestoreToken},
			docker.ContainerUploadArgs{File: pulumi.String(contract.AgentCopyTokensFile), Content: b.CopyTokens},
			docker.ContainerUploadArgs{File: pulumi.String(contract.AgentSourceTokenFile), Content: b.SourceToken},
		},
		Mounts: docker.ContainerMountArray{
			docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: spool.Name, Target: pulumi.String(contract.SpoolMount)},
			docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: b.Slots, Target: pulumi.String(contract.SlotsMount)},
		},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
			docker.ContainerNetworksAdvancedArgs{Name: network, Aliases: pulumi.StringArray{pulumi.String(contract.AgentAlias)}},
			docker.ContainerNetworksAdvancedArgs{Name: b.Network},
		},
		// No Docker health check: each check would be a process the engine
		// starts in the container every interval, for every tenant (see
		// contract.AgentStateFile). The agent writes its verdict to its
		// state file at least every 30 s; `pulumi preview` and `pulumi up`
		// read it and warn naming the tenant, and the monitoring alerts
		// read its metrics.
		Init:       pulumi.Bool(true),
		Restart:    pulumi.String("unless-stopped"),
		Memory:     Memory(agentMemoryMB),
		MemorySwap: Memory(agentMemoryMB),
		// SIGTERM, then the agent stops pg_receivewal and sends what it
		// received.
		DestroyGraceSeconds: pulumi.Int(30),
		Labels:              ContainerLabels(t, "backup"),
	}, append(t.Opts, Named, pulumi.ReplaceOnChanges([]string{"healthcheck", "init"}))...)
	if err != nil {
		return fmt.Errorf("container: %w", err)
	}
	return nil
}

// agentMemoryMB bounds an agent: restic's index and a base backup's stream.
const agentMemoryMB = 256

// RestoreLabels are the database's and migration's labels saying which
// restore the tenant's data comes from: a new restore replaces both, the
// migration runs again on the restored schema.
func RestoreLabels(t tenants.Parts) map[string]string {
	if t.Backup == nil || t.Backup.Restore == nil {
		return nil
	}
	return map[string]string{"polls.restore": t.Backup.Restore.ID}
}
