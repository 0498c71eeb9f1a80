// Package tenants says what a tenant is, whatever it runs on: its generated
// secrets, the names of its parts and the order they come up in. A Platform
// (package onehost for one Docker engine, package swarm for a Swarm cluster)
// realises each part.
//
// The order is network → database → migration → app → route, each step
// gated on the one before: the migration starts once the database is
// healthy, the app once the migration succeeded, and the tenant's route
// (package router) once the app serves. A platform watches its parts come
// up itself, so a part that exits fails at once and one that never becomes
// healthy fails with its last health check's output, naming the tenant.
package tenants

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/spec"
)

// Type is the component's type token.
const Type = "polls:index:Tenant"

// Platform realises a tenant's parts. New calls its methods in the order a
// tenant needs, each given the gate of the step before, and every resource
// it declares takes t.Opts (the tenant component as parent, the provider).
type Platform interface {
	// Network declares the tenant's private network and returns its name.
	// Only this tenant's database, migration and app are ever on it.
	Network(ctx *pulumi.Context, t Parts) (pulumi.StringOutput, error)
	// Database declares the tenant's PostgreSQL with its data kept across
	// re-deploys. ready resolves once it accepts the tenant's password.
	Database(ctx *pulumi.Context, t Parts, network pulumi.StringOutput) (ready pulumi.StringOutput, err error)
	// Migration declares the run of t.MigrationCommand once dbReady has
	// resolved. migrated resolves once it succeeded and fails with its exit
	// code and log otherwise; its value is constant, so gating on it never
	// changes the app by itself.
	Migration(ctx *pulumi.Context, t Parts, network, dbReady pulumi.StringOutput) (migrated pulumi.StringOutput, err error)
	// App declares the app once migrated has resolved, so a failed
	// migration leaves the serving version alone. upstream resolves to the
	// app's host:port on the edge network once the new version serves.
	App(ctx *pulumi.Context, t Parts, network, migrated pulumi.StringOutput) (upstream pulumi.StringOutput, err error)
}

// Args configures one tenant.
type Args struct {
	// Tenant is the validated tenant.
	Tenant spec.Tenant
	// Stack supplies the domain, images, memory limits and admin user.
	Stack spec.Stack
	// Prefix starts every Docker object name, e.g. "polls-dev", so stacks
	// can share a Docker host or cluster.
	Prefix string
	// AppImage is the image the migration and app run, unless the tenant
	// pins its own.
	AppImage pulumi.StringInput
	// Platform realises the tenant's parts.
	Platform Platform
}

// Parts is what a platform realises a tenant from.
type Parts struct {
	Tenant spec.Tenant
	Stack  spec.Stack
	Prefix string
	// Image is the app and migration image reference.
	Image pulumi.StringInput
	// Secrets are the tenant's generated secrets; deliver them as files.
	Secrets Secrets
	// Opts are the options of every resource of the tenant: its parent, the
	// tenant component, from which they inherit the provider.
	Opts []pulumi.ResourceOption
}

// Secrets are a tenant's generated secrets, always Pulumi secrets. Each is
// delivered as a file at its spec path (spec.DBPasswordFile and so on),
// never in an environment variable or argument.
type Secrets struct {
	// DBPassword is the database role's password.
	DBPassword pulumi.StringOutput
	// DatabaseURL is the app's connection URL, password included.
	DatabaseURL pulumi.StringOutput
	// AdminPassword is the admin account's password.
	AdminPassword pulumi.StringOutput
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
	// Upstream is host:port of the tenant's app on the edge network, known
	// once the app serves: the router routes to it then.
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
	parts := Parts{
		Tenant: args.Tenant, Stack: args.Stack, Prefix: args.Prefix, Image: args.AppImage,
		Secrets: Secrets{
			DBPassword:    dbSecret,
			DatabaseURL:   pulumi.Sprintf("postgres://%s:%s@%s:5432/%s?sslmode=disable", spec.DBUser, dbSecret, spec.DBAlias, spec.DBName),
			AdminPassword: adminSecret,
		},
		Opts: []pulumi.ResourceOption{parent},
	}
	if args.Tenant.Image != "" {
		parts.Image = pulumi.String(args.Tenant.Image)
	}

	p := args.Platform
	network, err := p.Network(ctx, parts)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: network: %w", name, err)
	}
	dbReady, err := p.Database(ctx, parts, network)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: database: %w", name, err)
	}
	migrated, err := p.Migration(ctx, parts, network, dbReady)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: migration: %w", name, err)
	}
	upstream, err := p.App(ctx, parts, network, migrated)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: app: %w", name, err)
	}

	t.URL = pulumi.String(args.Stack.URL(args.Tenant.ServerNames(args.Stack.Domain)[0])).ToStringOutput()
	t.AdminUser = pulumi.String(args.Stack.AdminUser).ToStringOutput()
	t.AdminPassword = adminSecret
	t.Upstream = upstream
	if err := ctx.RegisterResourceOutputs(t, pulumi.Map{
		"url": t.URL, "adminUser": t.AdminUser, "adminPassword": t.AdminPassword,
	}); err != nil {
		return nil, fmt.Errorf("tenant %s: register outputs: %w", name, err)
	}
	return t, nil
}

// Name returns the Docker name of the tenant's part: "<prefix>-<tenant>-<part>".
func (t Parts) Name(part string) string { return ObjectName(t.Prefix, t.Tenant.Name, part) }

// ObjectName is the Docker name of a tenant's part, as Parts.Name.
func ObjectName(prefix, tenant, part string) string { return prefix + "-" + tenant + "-" + part }

// NetworkName is the Docker name of a tenant's private network.
func NetworkName(prefix, tenant string) string { return ObjectName(prefix, tenant, "net") }

// Labels marks a part with its stack, tenant and role, for `docker ps
// --filter` and `docker service ls --filter`.
func (t Parts) Labels(role string) map[string]string {
	return map[string]string{"polls.stack": t.Prefix, "polls.tenant": t.Tenant.Name, "polls.role": role}
}

// Upstream is the app's host:port on the edge network, given its name there.
func Upstream(host string) string { return host + ":" + strconv.Itoa(spec.AppPort) }

// AppCommand and MigrationCommand are what the app image runs: serve, or
// migrate the schema and ensure the admin account, then exit.
var (
	AppCommand       = []string{"serve"}
	MigrationCommand = []string{"migrate", "-createsuperuser"}
)

// AppEnv is the app's environment: no secrets, only where to find them.
func (t Parts) AppEnv() []string {
	return []string{
		"TENANT=" + t.Tenant.Name,
		"LISTEN_ADDR=:" + strconv.Itoa(spec.AppPort),
		"ALLOWED_HOSTS=" + strings.Join(t.Tenant.ServerNames(t.Stack.Domain), ","),
		"DATABASE_URL_FILE=" + spec.DatabaseURLFile,
	}
}

// MigrationEnv is the migration's environment.
func (t Parts) MigrationEnv() []string {
	return []string{
		"TENANT=" + t.Tenant.Name,
		"DATABASE_URL_FILE=" + spec.DatabaseURLFile,
		"ADMIN_USER=" + t.Stack.AdminUser,
		"ADMIN_PASSWORD_FILE=" + spec.AdminPasswordFile,
	}
}

// DatabaseEnv is PostgreSQL's environment (the official image's contract).
func (t Parts) DatabaseEnv() []string {
	return []string{
		"POSTGRES_USER=" + spec.DBUser,
		"POSTGRES_DB=" + spec.DBName,
		"POSTGRES_PASSWORD_FILE=" + spec.DBPasswordFile,
		"PGDATA=" + spec.PGMount + "/pgdata",
	}
}

// DatabaseHealthScript is the database's health check. Healthy means: the server
// accepts TCP connections (so the image's first-run initialisation is over)
// and the role's password equals the password file the stack delivered. The
// official image sets the password only when it initialises an empty data
// directory; syncing it here means a regenerated or rotated secret, or a
// tenant re-added over its retained volume, never locks the app out of its
// data. Loopback connections are trusted by the image's pg_hba.conf, and the
// password travels through psql's backtick expansion of the file, never
// through argv or the container's environment. The sync runs once per file
// content. No pipeline: a health check that times out leaves its children
// to PID 1, so PostgreSQL must not be PID 1 (platforms run an init).
const DatabaseHealthScript = `pg_isready -q -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" || exit 1
sum=$(sha256sum < "$POSTGRES_PASSWORD_FILE")
[ "$sum" = "$(cat /tmp/polls-password-synced 2>/dev/null)" ] && exit 0
psql -qAtX -v ON_ERROR_STOP=1 -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" >/dev/null <<'SQL' || exit 1
\set pw ` + "`" + `cat "$POSTGRES_PASSWORD_FILE"` + "`" + `
ALTER ROLE CURRENT_USER PASSWORD :'pw';
SQL
printf '%s' "$sum" > /tmp/polls-password-synced`

// AppHealthCommand is the app's health check, run inside its container.
var AppHealthCommand = []string{"CMD", spec.AppBinary, "healthcheck"}

// Gate resolves to value once wait says the part is up, and fails with what
// (the tenant and part) and wait's reason otherwise. wait gets the values
// of on (the part's ID, say) once they are known. In a preview nothing is
// waited for. The value is constant, so gating on it never changes a
// dependent's inputs by itself.
func Gate(ctx *pulumi.Context, what string, wait func(ctx context.Context, on []any) error, value string, on ...any) pulumi.StringOutput {
	return pulumi.All(on...).ApplyTWithContext(ctx.Context(), func(wctx context.Context, v []any) (string, error) {
		if ctx.DryRun() {
			return value, nil
		}
		if err := wait(wctx, v); err != nil {
			return "", fmt.Errorf("%s %w", what, err)
		}
		return value, nil
	}).(pulumi.StringOutput)
}
