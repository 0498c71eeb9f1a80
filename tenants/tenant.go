// Package tenants declares one isolated tenant: a PostgreSQL container with
// its own volume and generated password, a migration that runs to completion,
// and the app, all on a private network no other tenant can reach.
//
// The order is database → migration → app → route, each step gated on the
// one before: the migration starts once the database is healthy, the app
// once the migration exited 0, and the tenant's route (package router) once
// the app is healthy. Health is watched by the program itself (Engine), so a
// container that exits fails at once and one that never becomes healthy
// fails with its last health check's output, naming the tenant.
package tenants

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/spec"
)

// Type is the component's type token.
const Type = "polls:index:Tenant"

// Args configures one tenant.
type Args struct {
	// Tenant is the validated tenant.
	Tenant spec.Tenant
	// Stack supplies the domain, images, memory limits and admin user.
	Stack spec.Stack
	// Prefix starts every Docker object name, e.g. "polls-dev", so stacks
	// can share a Docker host.
	Prefix string
	// AppImage is the image the migration and app run, unless the tenant
	// pins its own.
	AppImage pulumi.StringInput
	// EdgeNetwork is the name of the network shared by the router and the
	// apps. Databases are never attached to it.
	EdgeNetwork pulumi.StringInput
	// Subnet and Gateway are the tenant's private network addresses, as
	// planned by package subnets.
	Subnet  netip.Prefix
	Gateway netip.Addr
	// Engine watches the tenant's containers come up.
	Engine Engine
}

// Engine is what the program asks the Docker engine itself (package
// dockerapi implements it).
type Engine interface {
	// Wait returns once container id is healthy, and fails at once when it
	// exits or turns unhealthy, or after within.
	Wait(ctx context.Context, id string, within time.Duration) error
}

// Tenant is the component resource for one tenant.
type Tenant struct {
	pulumi.ResourceState

	// URL is where users reach the tenant through the router.
	URL pulumi.StringOutput `pulumi:"url"`
	// AdminUser is the admin account's name.
	AdminUser pulumi.StringOutput `pulumi:"adminUser"`
	// AdminPassword is the admin account's password; always a secret.
	AdminPassword pulumi.StringOutput `pulumi:"adminPassword"`
	// Upstream is host:port of the app container on the edge network,
	// known once the container is healthy: the router routes to it then.
	Upstream pulumi.StringOutput `pulumi:"-"`
}

// New declares tenant args.Tenant. Its children are named after the tenant,
// never after a position in the list, so adding or removing a tenant touches
// no other tenant's resources.
func New(ctx *pulumi.Context, args Args, opts ...pulumi.ResourceOption) (*Tenant, error) {
	t := &Tenant{}
	name := args.Tenant.Name
	if err := ctx.RegisterComponentResource(Type, name, t, opts...); err != nil {
		return nil, fmt.Errorf("tenant %s: register component: %w", name, err)
	}
	parent := pulumi.Parent(t)
	objectName := dockerName(args.Prefix, name)

	dbPassword, err := random.NewRandomPassword(ctx, name+"-db-password", &random.RandomPasswordArgs{
		Length: pulumi.Int(32), Special: pulumi.Bool(false),
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: database password: %w", name, err)
	}
	adminPassword, err := random.NewRandomPassword(ctx, name+"-admin-password", &random.RandomPasswordArgs{
		Length: pulumi.Int(24), Special: pulumi.Bool(false),
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: admin password: %w", name, err)
	}
	// The provider marks results secret too; saying it here keeps them
	// secret whatever the provider version does.
	dbSecret := pulumi.ToSecret(dbPassword.Result).(pulumi.StringOutput)
	adminSecret := pulumi.ToSecret(adminPassword.Result).(pulumi.StringOutput)
	databaseURL := pulumi.Sprintf("postgres://%s:%s@%s:5432/%s?sslmode=disable", spec.DBUser, dbSecret, spec.DBAlias, spec.DBName)

	network, err := newNetwork(ctx, name, objectName("net"), args.Subnet, args.Gateway, parent)
	if err != nil {
		return nil, err
	}
	db, err := newDatabase(ctx, args, objectName, network, dbSecret, parent)
	if err != nil {
		return nil, err
	}
	image := args.AppImage
	if args.Tenant.Image != "" {
		image = pulumi.String(args.Tenant.Image)
	}
	dbReady := healthy(ctx, args.Engine, "tenant "+name+": database", db, dbWait)
	migrate, err := newMigration(ctx, args, image, network, databaseURL, adminSecret, dbReady, parent)
	if err != nil {
		return nil, err
	}
	app, err := newApp(ctx, args, image, network, databaseURL, migrate, parent)
	if err != nil {
		return nil, err
	}
	appReady := healthy(ctx, args.Engine, "tenant "+name+": app", app, appWait)

	t.URL = pulumi.String(args.Stack.URL(args.Tenant.ServerNames(args.Stack.Domain)[0])).ToStringOutput()
	t.AdminUser = pulumi.String(args.Stack.AdminUser).ToStringOutput()
	t.AdminPassword = adminSecret
	t.Upstream = pulumi.All(app.Name, appReady).ApplyT(func(v []any) string {
		return v[0].(string) + ":" + strconv.Itoa(spec.AppPort)
	}).(pulumi.StringOutput)
	if err := ctx.RegisterResourceOutputs(t, pulumi.Map{
		"url": t.URL, "adminUser": t.AdminUser, "adminPassword": t.AdminPassword,
	}); err != nil {
		return nil, fmt.Errorf("tenant %s: register outputs: %w", name, err)
	}
	return t, nil
}

// How long a container may take to become healthy before `pulumi up`
// fails for its tenant. A database's first start initialises its data
// directory; the app starts in a second or two.
const (
	dbWait  = 3 * time.Minute
	appWait = 2 * time.Minute
)

// healthy resolves to "healthy" once container c is, and otherwise fails
// with what (the tenant and role) and the engine's reason. In a preview
// nothing is waited for. The value is constant so that gating on it never
// changes a dependent's inputs by itself.
func healthy(ctx *pulumi.Context, engine Engine, what string, c *docker.Container, within time.Duration) pulumi.StringOutput {
	return c.ID().ToStringOutput().ApplyTWithContext(ctx.Context(), func(wctx context.Context, id string) (string, error) {
		if ctx.DryRun() {
			return "healthy", nil
		}
		if err := engine.Wait(wctx, id, within); err != nil {
			return "", fmt.Errorf("%s %w", what, err)
		}
		return "healthy", nil
	}).(pulumi.StringOutput)
}

// NetworkName is the Docker name of a tenant's private network.
func NetworkName(prefix, tenant string) string { return dockerName(prefix, tenant)("net") }

// dockerName returns a function naming the tenant's Docker objects
// "<prefix>-<tenant>-<part>".
func dockerName(prefix, tenant string) func(part string) string {
	return func(part string) string { return prefix + "-" + tenant + "-" + part }
}

// labels marks a container with its tenant and role, for `docker ps --filter`.
func labels(prefix, tenant, role string) docker.ContainerLabelArray {
	return docker.ContainerLabelArray{
		docker.ContainerLabelArgs{Label: pulumi.String("polls.stack"), Value: pulumi.String(prefix)},
		docker.ContainerLabelArgs{Label: pulumi.String("polls.tenant"), Value: pulumi.String(tenant)},
		docker.ContainerLabelArgs{Label: pulumi.String("polls.role"), Value: pulumi.String(role)},
	}
}

func allowedHosts(t spec.Tenant, domain string) string {
	return strings.Join(t.ServerNames(domain), ",")
}
