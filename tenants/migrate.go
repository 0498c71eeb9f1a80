package tenants

import (
	"fmt"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/dockerlog"
	"github.com/polls-tenants/polls/spec"
)

// newMigration declares the container that migrates the tenant's schema and
// ensures its admin user, once per change of image or secrets. The provider
// attaches to it and records its exit code and logs; appGate turns a failure
// into an error before the app is touched.
//
// dbReady gates it on the database's health: it is a label, constant once
// resolved, so it orders without ever replacing the migration by itself.
//
// Its name is generated, like the app's, so it is replaced create-first. A
// fixed name would force delete-first replacement, and Pulumi then replaces
// delete-first everything whose inputs depend on it: the app, whose old
// version would go down before the new one is up.
func newMigration(ctx *pulumi.Context, args Args, image pulumi.StringInput, network *docker.Network, databaseURL, adminPassword, dbReady pulumi.StringOutput, opts ...pulumi.ResourceOption) (*docker.Container, error) {
	tenant := args.Tenant.Name
	m, err := docker.NewContainer(ctx, tenant+"-migrate", &docker.ContainerArgs{
		Image:   image,
		Command: pulumi.StringArray{pulumi.String("migrate"), pulumi.String("-createsuperuser")},
		Envs: pulumi.StringArray{
			pulumi.String("TENANT=" + tenant),
			pulumi.String("DATABASE_URL_FILE=" + spec.DatabaseURLFile),
			pulumi.String("ADMIN_USER=" + args.Stack.AdminUser),
			pulumi.String("ADMIN_PASSWORD_FILE=" + spec.AdminPasswordFile),
		},
		Uploads: docker.ContainerUploadArray{
			docker.ContainerUploadArgs{File: pulumi.String(spec.DatabaseURLFile), Content: databaseURL},
			docker.ContainerUploadArgs{File: pulumi.String(spec.AdminPasswordFile), Content: adminPassword},
		},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
			docker.ContainerNetworksAdvancedArgs{Name: network.Name},
		},
		// Run to completion: attach, keep the logs, and accept that the
		// container is not running afterwards.
		Attach:     pulumi.Bool(true),
		Logs:       pulumi.Bool(true),
		MustRun:    pulumi.Bool(false),
		Restart:    pulumi.String("no"),
		Memory:     memory(args.Stack.AppMemory(args.Tenant)),
		MemorySwap: memory(args.Stack.AppMemory(args.Tenant)),
		Labels: append(labels(args.Prefix, tenant, "migrate"),
			docker.ContainerLabelArgs{Label: pulumi.String("polls.database"), Value: dbReady}),
	}, append(opts, createFirst)...)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: migration container: %w", tenant, err)
	}
	return m, nil
}

// appGate resolves to "succeeded" once the migration container exited 0,
// and fails with the tenant's name and the container's readable log
// otherwise. The app takes it as an input, so it is created or updated only
// after a successful migration, and a failed one fails `pulumi up` for this
// tenant alone while its running app is left as it was. The value is
// constant so that re-running a migration does not by itself replace the app.
func appGate(tenant string, m *docker.Container) pulumi.StringOutput {
	return pulumi.All(m.ExitCode, m.ContainerLogs).ApplyT(func(v []any) (string, error) {
		code, _ := v[0].(int)
		logs, _ := v[1].(string)
		if code != 0 {
			return "", fmt.Errorf("tenant %s: migration container exited with status %d; its log:\n%s", tenant, code, dockerlog.Demux(logs))
		}
		return "succeeded", nil
	}).(pulumi.StringOutput)
}
