package platform

import (
	"fmt"
	"sort"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/dockerlog"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/tenants"
)

// OneShot makes args a container that runs to completion: `pulumi up`
// attaches to it until it exits, keeps its log (which Succeeded reads),
// accepts that it is not running afterwards, and Docker never restarts it.
func OneShot(args *docker.ContainerArgs) *docker.ContainerArgs {
	args.Attach = pulumi.Bool(true)
	args.Logs = pulumi.Bool(true)
	args.MustRun = pulumi.Bool(false)
	args.Restart = pulumi.String("no")
	return args
}

// Migration declares the container that migrates the tenant's schema and
// ensures its admin user, once per change of image or secrets, on the
// engine the program talks to (on Swarm, a manager, attached to the
// tenant's overlay network): a container, unlike a service, gives its exit
// code and log. The provider attaches to it and records both; the result
// turns a failure into an error before the app is touched.
//
// dbReady gates it on the database's health: it is a label, constant once
// resolved, so it orders without ever replacing the migration by itself.
//
// Its name is generated, like the app's, so it is replaced create-first. A
// fixed name would force delete-first replacement, and Pulumi then replaces
// delete-first everything whose inputs depend on it: the app, whose old
// version would go down before the new one is up.
func Migration(ctx *pulumi.Context, t tenants.Parts, network, dbReady pulumi.StringOutput) (pulumi.StringOutput, error) {
	tenant := t.Tenant.Name
	m, err := docker.NewContainer(ctx, tenant+"-migrate", OneShot(&docker.ContainerArgs{
		Image:   t.Image,
		Command: pulumi.ToStringArray(contract.MigrationCommand),
		Envs:    pulumi.ToStringArray(t.MigrationEnv()),
		Uploads: docker.ContainerUploadArray{
			docker.ContainerUploadArgs{File: pulumi.String(contract.DatabaseURLFile), Content: t.Secrets.DatabaseURL},
			docker.ContainerUploadArgs{File: pulumi.String(contract.AdminPasswordFile), Content: t.Secrets.AdminPassword},
		},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
			docker.ContainerNetworksAdvancedArgs{Name: network},
		},
		Memory:     Memory(t.Stack.AppMemory(t.Tenant)),
		MemorySwap: Memory(t.Stack.AppMemory(t.Tenant)),
		Labels: ContainerLabels(t, "migrate", append(ExtraLabels(RestoreLabels(t)),
			docker.ContainerLabelArgs{Label: pulumi.String("polls.database"), Value: dbReady})...),
	}), append(t.Opts, CreateFirst)...)
	if err != nil {
		return pulumi.StringOutput{}, fmt.Errorf("container: %w", err)
	}
	return Succeeded(m, "tenant "+tenant+": migration container", migrated), nil
}

// MigratesInApp reports whether the tenant's app runs its migration as it
// starts (polls:migrations app), so that no migration container is
// declared.
func MigratesInApp(t tenants.Parts) bool { return t.Stack.Migrations == spec.MigrationsApp }

// MigrationInApp is the migration's gate when the app migrates as it
// starts: nothing is declared, and the app waits for the database's
// health alone. Its value is Migration's, so switching polls:migrations
// changes no label of the app (on Swarm, a changed label would replace
// the app's service delete-first).
func MigrationInApp(dbReady pulumi.StringOutput) pulumi.StringOutput {
	return dbReady.ApplyT(func(string) string { return migrated }).(pulumi.StringOutput)
}

// migrated is the value of a migration's gate.
const migrated = "succeeded"

// Succeeded resolves to value once the run-to-completion container c exited
// 0, and fails naming what and with the container's readable log otherwise.
// Whatever takes it as an input is created or updated only after c
// succeeded. The value is constant so that re-running c does not by itself
// replace what depends on it.
func Succeeded(c *docker.Container, what, value string) pulumi.StringOutput {
	return pulumi.All(c.ExitCode, c.ContainerLogs).ApplyT(func(v []any) (string, error) {
		code, _ := v[0].(int)
		logs, _ := v[1].(string)
		if code != 0 {
			return "", fmt.Errorf("%s exited with status %d; its log:\n%s", what, code, dockerlog.Demux(logs))
		}
		return value, nil
	}).(pulumi.StringOutput)
}

// ContainerLabels converts a part's labels (contract.Labels) for a
// container, in a fixed order, followed by extra.
func ContainerLabels(t tenants.Parts, role string, extra ...docker.ContainerLabelArgs) docker.ContainerLabelArray {
	l := t.Labels(role)
	out := docker.ContainerLabelArray{}
	for _, k := range []string{contract.LabelStack, contract.LabelTenant, contract.LabelRole} {
		out = append(out, docker.ContainerLabelArgs{Label: pulumi.String(k), Value: pulumi.String(l[k])})
	}
	for _, e := range extra {
		out = append(out, e)
	}
	return out
}

// ExtraLabels converts labels for a container, sorted by name.
func ExtraLabels(l map[string]string) []docker.ContainerLabelArgs {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []docker.ContainerLabelArgs
	for _, k := range keys {
		out = append(out, docker.ContainerLabelArgs{Label: pulumi.String(k), Value: pulumi.String(l[k])})
	}
	return out
}
