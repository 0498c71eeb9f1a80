package tenants

import (
	"fmt"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/spec"
)

// healthScript is the database's health check. Healthy means: the server
// accepts TCP connections (so the image's first-run initialisation is over)
// and the role's password equals the password file the stack delivered. The
// official image sets the password only when it initialises an empty data
// directory; syncing it here means a regenerated or rotated secret, or a
// tenant re-added over its retained volume, never locks the app out of its
// data. Loopback connections are trusted by the image's pg_hba.conf, and the
// password travels through psql's backtick expansion of the file, never
// through argv or the container's environment. The sync runs once per file
// content. No pipeline: see the container's Init.
const healthScript = `pg_isready -q -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" || exit 1
sum=$(sha256sum < "$POSTGRES_PASSWORD_FILE")
[ "$sum" = "$(cat /tmp/polls-password-synced 2>/dev/null)" ] && exit 0
psql -qAtX -v ON_ERROR_STOP=1 -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" >/dev/null <<'SQL' || exit 1
\set pw ` + "`" + `cat "$POSTGRES_PASSWORD_FILE"` + "`" + `
ALTER ROLE CURRENT_USER PASSWORD :'pw';
SQL
printf '%s' "$sum" > /tmp/polls-password-synced`

// newDatabase declares the tenant's data volume and PostgreSQL container.
func newDatabase(ctx *pulumi.Context, args Args, name func(string) string, network *docker.Network, password pulumi.StringOutput, opts ...pulumi.ResourceOption) (*docker.Container, error) {
	tenant := args.Tenant.Name
	// The volume outlives the tenant's removal from config and `pulumi
	// destroy`: data is deleted only on purpose (`docker volume rm`). Adding
	// the tenant back re-attaches it, as creating an existing volume is a no-op.
	volume, err := docker.NewVolume(ctx, tenant+"-pgdata", &docker.VolumeArgs{
		Name: pulumi.String(name("pgdata")),
		Labels: docker.VolumeLabelArray{
			docker.VolumeLabelArgs{Label: pulumi.String("polls.tenant"), Value: pulumi.String(tenant)},
			docker.VolumeLabelArgs{Label: pulumi.String("polls.retained"), Value: pulumi.String("true")},
		},
	}, append(opts, pulumi.RetainOnDelete(true))...)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: data volume: %w", tenant, err)
	}
	db, err := docker.NewContainer(ctx, tenant+"-db", &docker.ContainerArgs{
		Name:  pulumi.String(name("db")),
		Image: pulumi.String(args.Stack.PostgresImage),
		Envs: pulumi.StringArray{
			pulumi.String("POSTGRES_USER=" + spec.DBUser),
			pulumi.String("POSTGRES_DB=" + spec.DBName),
			pulumi.String("POSTGRES_PASSWORD_FILE=" + spec.DBPasswordFile),
			pulumi.String("PGDATA=" + spec.PGMount + "/pgdata"),
		},
		Uploads: docker.ContainerUploadArray{
			docker.ContainerUploadArgs{File: pulumi.String(spec.DBPasswordFile), Content: password},
		},
		Mounts: docker.ContainerMountArray{
			docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: volume.Name, Target: pulumi.String(spec.PGMount)},
		},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
			docker.ContainerNetworksAdvancedArgs{Name: network.Name, Aliases: pulumi.StringArray{pulumi.String(spec.DBAlias)}},
		},
		// No StartInterval: it needs Docker API 1.44, and Debian 12 ships
		// 1.41. The program probes the check itself while the database
		// starts (see healthy), so the interval only paces later checks.
		Healthcheck: docker.ContainerHealthcheckArgs{
			Tests:       pulumi.StringArray{pulumi.String("CMD-SHELL"), pulumi.String(healthScript)},
			Interval:    pulumi.String("30s"),
			Timeout:     pulumi.String("10s"),
			Retries:     pulumi.Int(5),
			StartPeriod: pulumi.String("2m0s"),
		},
		// PostgreSQL must not be PID 1: a health check that times out
		// leaves its children to PID 1, and the postmaster treats any
		// child it reaps that died by a signal as a crashed backend and
		// restarts every connection (seen here under load: "server process
		// was terminated by signal 13"). Docker's init reaps them instead.
		Init:       pulumi.Bool(true),
		Restart:    pulumi.String("unless-stopped"),
		Memory:     memory(args.Stack.DBMemoryMB),
		MemorySwap: memory(args.Stack.DBMemoryMB),
		Labels:     labels(args.Prefix, tenant, "db"),
	}, append(opts, named, notUpdatedInPlace)...)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: database container: %w", tenant, err)
	}
	return db, nil
}

// named is for resources with a fixed Docker name: Docker refuses two
// containers or networks of one name, so a replacement must delete the old
// one first (the engine creates first otherwise, e.g. for `--replace`).
var named = pulumi.DeleteBeforeReplace(true)

// createFirst is for containers with generated names, replaced with the new
// one created before the old one is deleted. It must be said: the docker
// provider asks for delete-first replacement of every container, and Pulumi
// then also replaces delete-first everything that depends on it.
var createFirst = pulumi.DeleteBeforeReplace(false)

// notUpdatedInPlace makes a change of these container arguments replace the
// container: the provider accepts them as in-place updates but applies
// nothing, so the change would exist only in Pulumi's state.
var notUpdatedInPlace = pulumi.ReplaceOnChanges([]string{"init", "healthcheck"})

// memory returns a container memory limit in MiB, or no limit for 0. Used
// for MemorySwap too: memory+swap equal to memory means no swap, and left
// unset Docker would pick twice the memory, which then shows as a diff on
// every preview.
func memory(mb int) pulumi.IntPtrInput {
	if mb == 0 {
		return nil
	}
	return pulumi.Int(mb)
}
