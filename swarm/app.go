package swarm

import (
	"fmt"
	"maps"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/tenants"
)

// RestoreEnv is the variable of a migrating app's environment that names
// the tenant's last restore (polls:migrations app).
const RestoreEnv = "POLLS_RESTORE"

// App declares the tenant's app service: its replicas spread over the
// nodes, on its private network and on the edge network, where the router
// resolves the service's name to its healthy tasks.
//
// A new version rolls one task at a time, start-first: the new task must
// pass its health check before an old one stops. The pause between tasks
// outlasts the router's DNS cache (5 s), so the router always knows a task
// that still runs. A new version whose task fails is rolled back by Swarm,
// and `pulumi up` fails for this tenant with the task's error and log.
func (p *Platform) App(ctx *pulumi.Context, t tenants.Parts, network, migrated pulumi.StringOutput) (pulumi.StringOutput, error) {
	tenant := t.Tenant.Name
	url, err := secret(ctx, t, "database-url-secret", contract.DatabaseURLFile, t.Secrets.DatabaseURL)
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	name := t.Name("app")
	image := p.image(t.Image)
	args, vars := contract.AppCommand, env(t.AppEnv())
	secrets := docker.ServiceTaskSpecContainerSpecSecretArray{url}
	if platform.MigratesInApp(t) {
		// Each task migrates as it starts (concurrent runs are safe: the
		// app's migrations take a lock), with the admin password as a
		// secret file. A restore rolls the tasks once the database is
		// back, so they migrate what it restored: the restore's ID is in
		// the template, which Swarm updates in place, not in a label.
		admin, err := secret(ctx, t, "admin-password-secret", contract.AdminPasswordFile, t.Secrets.AdminPassword)
		if err != nil {
			return pulumi.StringOutput{}, err
		}
		args, vars = contract.MigratingAppCommand, env(t.MigratingAppEnv())
		secrets = append(secrets, admin)
		if t.Backup != nil && t.Backup.Restore != nil {
			vars[RestoreEnv] = pulumi.String(t.Backup.Restore.ID)
		}
	}
	container := docker.ServiceTaskSpecContainerSpecArgs{
		Image:   image,
		Args:    pulumi.ToStringArray(args),
		Env:     vars,
		Secrets: secrets,
		// Every check is a process the engine starts in the task, about
		// 0.12 CPU-s of dockerd, containerd and the shim's (README,
		// "Health checks on Swarm"). Swarm counts a new task as running
		// one interval after it starts (API 1.41 has no start interval),
		// so the interval is also what each replica of a rolling update
		// waits at least: 5 s, against 2 s before, costs a release 3 s
		// per replica and the engine 0.4 as many checks per app task.
		Healthcheck: docker.ServiceTaskSpecContainerSpecHealthcheckArgs{
			Tests:       pulumi.ToStringArray(contract.AppHealthCommand),
			Interval:    pulumi.String("5s"),
			Timeout:     pulumi.String("3s"),
			Retries:     pulumi.Int(3),
			StartPeriod: pulumi.String("30s"),
		},
		// SIGTERM, then the app drains requests in flight (8 s).
		StopGracePeriod: pulumi.String("10s"),
	}
	task := docker.ServiceTaskSpecArgs{
		ContainerSpec: container,
		NetworksAdvanceds: docker.ServiceTaskSpecNetworksAdvancedArray{
			docker.ServiceTaskSpecNetworksAdvancedArgs{Name: network},
			docker.ServiceTaskSpecNetworksAdvancedArgs{Name: p.Edge},
		},
		Placement: docker.ServiceTaskSpecPlacementArgs{Prefs: pulumi.StringArray{pulumi.String("spread=node.id")}},
		Resources: docker.ServiceTaskSpecResourcesArgs{
			Limits: docker.ServiceTaskSpecResourcesLimitsArgs{MemoryBytes: memoryBytes(t.Stack.AppMemory(t.Tenant))},
		},
	}
	// A failed update is rolled back by Swarm (FailureAction): the
	// template carries its own digest, so the wait tells a rollback of a
	// change that kept the image.
	digest := specDigest(task)
	withDigest := pulumi.StringMap{SpecEnv: digest}
	maps.Copy(withDigest, vars)
	container.Env = withDigest
	task.ContainerSpec = container
	app, err := docker.NewService(ctx, tenant+"-app", &docker.ServiceArgs{
		Name:     pulumi.String(name),
		Labels:   labels(t, "app", map[string]pulumi.StringInput{"polls.migration": migrated}),
		Auth:     p.auth(image),
		Mode:     docker.ServiceModeArgs{Replicated: docker.ServiceModeReplicatedArgs{Replicas: pulumi.Int(t.Stack.AppReplicas(t.Tenant))}},
		TaskSpec: task,
		UpdateConfig: docker.ServiceUpdateConfigArgs{
			Order: pulumi.String("start-first"), Parallelism: pulumi.Int(1), Delay: pulumi.String("6s"),
			FailureAction: pulumi.String("rollback"), Monitor: pulumi.String("5s"),
		},
		RollbackConfig: docker.ServiceRollbackConfigArgs{
			Order: pulumi.String("start-first"), Parallelism: pulumi.Int(0), FailureAction: pulumi.String("pause"),
		},
		EndpointSpec: docker.ServiceEndpointSpecArgs{Mode: pulumi.String("dnsrr")},
	}, append(t.Opts, platform.Named)...)
	if err != nil {
		return pulumi.StringOutput{}, fmt.Errorf("service: %w", err)
	}
	return p.running(ctx, "tenant "+tenant+": app", app, image, digest, p.appWithin, nil), nil
}
