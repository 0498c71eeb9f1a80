package onehost

import (
	"fmt"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/dockerlog"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/tenants"
)

// Migration declares the container that migrates the tenant's schema and
// ensures its admin user, once per change of image or secrets. The provider
// attaches to it and records its exit code and logs; the result turns a
// failure into an error before the app is touched.
//
// dbReady gates it on the database's health: it is a label, constant once
// resolved, so it orders without ever replacing the migration by itself.
//
// Its name is generated, like the app's, so it is replaced create-first. A
// fixed name would force delete-first replacement, and Pulumi then replaces
// delete-first everything whose inputs depend on it: the app, whose old
// version would go down before the new one is up.
func (p *Platform) Migration(ctx *pulumi.Context, t tenants.Parts, network, dbReady pulumi.StringOutput) (pulumi.StringOutput, error) {
	return RunMigration(ctx, t, network, dbReady)
}

// RunMigration declares the migration container of Platform.Migration on
// the provider's engine. Package swarm runs its migrations this way too, on
// a manager, attached to the tenant's overlay network: a container, unlike
// a service, gives its exit code and log.
func RunMigration(ctx *pulumi.Context, t tenants.Parts, network, dbReady pulumi.StringOutput) (pulumi.StringOutput, error) {
	tenant := t.Tenant.Name
	m, err := docker.NewContainer(ctx, tenant+"-migrate", &docker.ContainerArgs{
		Image:   t.Image,
		Command: stringArray(tenants.MigrationCommand),
		Envs:    stringArray(t.MigrationEnv()),
		Uploads: docker.ContainerUploadArray{
			docker.ContainerUploadArgs{File: pulumi.String(spec.DatabaseURLFile), Content: t.Secrets.DatabaseURL},
			docker.ContainerUploadArgs{File: pulumi.String(spec.AdminPasswordFile), Content: t.Secrets.AdminPassword},
		},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
			docker.ContainerNetworksAdvancedArgs{Name: network},
		},
		// Run to completion: attach, keep the logs, and accept that the
		// container is not running afterwards.
		Attach:     pulumi.Bool(true),
		Logs:       pulumi.Bool(true),
		MustRun:    pulumi.Bool(false),
		Restart:    pulumi.String("no"),
		Memory:     memory(t.Stack.AppMemory(t.Tenant)),
		MemorySwap: memory(t.Stack.AppMemory(t.Tenant)),
		Labels: labels(t, "migrate",
			docker.ContainerLabelArgs{Label: pulumi.String("polls.database"), Value: dbReady}),
	}, append(t.Opts, createFirst)...)
	if err != nil {
		return pulumi.StringOutput{}, wrap("container", err)
	}
	return succeeded(tenant, m), nil
}

// succeeded resolves to "succeeded" once the migration container exited 0,
// and fails with the tenant's name and the container's readable log
// otherwise. The app takes it as an input, so it is created or updated only
// after a successful migration, and a failed one fails `pulumi up` for this
// tenant alone while its running app is left as it was. The value is
// constant so that re-running a migration does not by itself replace the app.
func succeeded(tenant string, m *docker.Container) pulumi.StringOutput {
	return pulumi.All(m.ExitCode, m.ContainerLogs).ApplyT(func(v []any) (string, error) {
		code, _ := v[0].(int)
		logs, _ := v[1].(string)
		if code != 0 {
			return "", fmt.Errorf("tenant %s: migration container exited with status %d; its log:\n%s", tenant, code, dockerlog.Demux(logs))
		}
		return "succeeded", nil
	}).(pulumi.StringOutput)
}
