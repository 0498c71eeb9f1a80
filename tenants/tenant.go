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
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
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
	// changes the app by itself. With polls:migrations app it declares
	// nothing and migrated resolves with dbReady: App's container runs the
	// migration as it starts (contract.MigratingAppCommand).
	Migration(ctx *pulumi.Context, t Parts, network, dbReady pulumi.StringOutput) (migrated pulumi.StringOutput, err error)
	// App declares the app once migrated has resolved, so a failed
	// migration leaves the serving version alone. On the edge network the
	// app answers at t.Upstream() (Tenant.Upstream), a name and a port of
	// the tenant's that never change, and serving resolves once the new
	// version answers there; a version that is not healthy never does.
	App(ctx *pulumi.Context, t Parts, network, migrated pulumi.StringOutput) (serving pulumi.StringOutput, err error)
	// Backup declares the tenant's backup agent, on its private network
	// and the backup network (t.Backup, set when backups are on).
	Backup(ctx *pulumi.Context, t Parts, network pulumi.StringOutput) error
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
	// Key is the stack's tenant key (secret), from which the tenant's
	// passwords are derived (contract.TenantPassword).
	Key pulumi.StringOutput
	// LegacyPasswords says an earlier version of the program deployed the
	// tenant with its passwords as random.RandomPassword resources (its
	// marker object lacks contract.LabelSecrets): it keeps them, until its
	// rotation is raised.
	LegacyPasswords bool
	// AppPort is the port the tenant's app listens on, its own within the
	// stack (package ports).
	AppPort int
	// Backup is what the tenant's backups take from the stack; nil when
	// backups are off.
	Backup *StackBackup
	// Hold, when set, holds back the registration of the tenant's
	// resources until it resolves. It carries no resource, so it orders
	// registrations in time and records no dependency (see the program's
	// newFirst).
	Hold pulumi.ResourceArrayInput
}

// StackBackup is what a tenant's backups take from the stack.
type StackBackup struct {
	Spec spec.Backup
	// Key is the stack's backup key (secret).
	Key pulumi.StringOutput
	// Network is the backup network.
	Network pulumi.StringOutput
	// Slots is the engine's base backup slots volume, shared by the agents.
	Slots pulumi.StringOutput
	// DBImage and AgentImage are the images built from agent/.
	DBImage    pulumi.StringInput
	AgentImage pulumi.StringInput
	// Copies are the tenants restored from this tenant's backups.
	Copies []string
	// PreRestore resolves once the database's current state is backed up,
	// before a restore replaces it; nil when no restore is pending.
	PreRestore pulumi.StringOutput
}

// Parts is what a platform realises a tenant from.
type Parts struct {
	Tenant spec.Tenant
	Stack  spec.Stack
	Prefix string
	// Image is the app and migration image reference.
	Image pulumi.StringInput
	// AppPort is the port the app listens on (Args.AppPort).
	AppPort int
	// Secrets are the tenant's generated secrets; deliver them as files.
	Secrets Secrets
	// SecretsLabel says the tenant's marker object (its network on one
	// engine, its database's service on Swarm) carries contract.LabelSecrets:
	// false only for a tenant deployed before (Args.LegacyPasswords), whose
	// object is left as it was.
	SecretsLabel bool
	// Opts are the options of every resource of the tenant: its parent, the
	// tenant component, from which they inherit the provider.
	Opts []pulumi.ResourceOption
	// Backup is the tenant's backups; nil when backups are off.
	Backup *Backup
}

// Backup is what a platform realises a tenant's backups from.
type Backup struct {
	*StackBackup
	// Config is the agent's config file (contract.AgentConfig, as JSON).
	Config string
	// RepositoryURL (with the gateway login), RepoKey, RestoreToken,
	// CopyTokens and SourceToken are the agent's secrets, as files.
	RepositoryURL pulumi.StringOutput
	RepoKey       pulumi.StringOutput
	RestoreToken  pulumi.StringOutput
	CopyTokens    pulumi.StringOutput
	SourceToken   pulumi.StringOutput
	// Restore is the restore the database's entrypoint applies once; nil
	// when none is configured.
	Restore *Restore
}

// Restore asks the database for a restore.
type Restore struct {
	// ID names it (contract.RestoreID); To is "latest" or a time.
	ID string
	To string
	// Request is the request file's content (contract.RestoreRequest); it
	// resolves only once the current state is backed up, so the database
	// is replaced after that.
	Request pulumi.StringOutput
}

// Secrets are a tenant's generated secrets, always Pulumi secrets. Each is
// delivered as a file at its contract path (contract.DBPasswordFile and so on),
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
	// Upstream is host:port of the tenant's app on the edge network. It
	// never changes, so neither does the tenant's route.
	Upstream string
	// Serving resolves once this update's version of the app answers at
	// Upstream: the router installs a new tenant's route then.
	Serving pulumi.StringOutput
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
	var parent pulumi.ResourceOption = pulumi.Parent(t)
	if args.Hold != nil {
		parent = pulumi.Composite(parent, pulumi.DependsOnInputs(args.Hold))
	}

	dbSecret, adminSecret, err := passwords(ctx, args, parent)
	if err != nil {
		return nil, err
	}
	parts := Parts{
		Tenant: args.Tenant, Stack: args.Stack, Prefix: args.Prefix, Image: args.AppImage, AppPort: args.AppPort,
		Secrets: Secrets{
			DBPassword:    dbSecret,
			DatabaseURL:   dbSecret.ApplyT(contract.DatabaseURL).(pulumi.StringOutput),
			AdminPassword: adminSecret,
		},
		SecretsLabel: !args.LegacyPasswords,
		Opts:         []pulumi.ResourceOption{parent},
	}
	if args.Tenant.Image != "" {
		parts.Image = pulumi.String(args.Tenant.Image)
	}
	if args.Backup != nil {
		parts.Backup = newBackup(args.Prefix, args.Tenant, args.Backup)
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
	serving, err := p.App(ctx, parts, network, migrated)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: app: %w", name, err)
	}
	if parts.Backup != nil {
		if err := p.Backup(ctx, parts, network); err != nil {
			return nil, fmt.Errorf("tenant %s: backup agent: %w", name, err)
		}
	}

	t.URL = pulumi.String(args.Stack.URL(args.Tenant.ServerNames(args.Stack.Domain)[0])).ToStringOutput()
	t.AdminUser = pulumi.String(args.Stack.AdminUser).ToStringOutput()
	t.AdminPassword = adminSecret
	t.Upstream = parts.Upstream()
	t.Serving = serving
	if err := ctx.RegisterResourceOutputs(t, pulumi.Map{
		"url": t.URL, "adminUser": t.AdminUser, "adminPassword": t.AdminPassword,
	}); err != nil {
		return nil, fmt.Errorf("tenant %s: register outputs: %w", name, err)
	}
	return t, nil
}

// Name returns the Docker name of the tenant's part (contract.ObjectName).
func (t Parts) Name(part string) string { return contract.ObjectName(t.Prefix, t.Tenant.Name, part) }

// Labels marks a part with its stack, tenant and role (contract.Labels).
func (t Parts) Labels(role string) map[string]string {
	return contract.Labels(t.Prefix, t.Tenant.Name, role)
}

// AppEnv is the app's environment (contract.AppEnv).
func (t Parts) AppEnv() []string {
	return contract.AppEnv(t.Tenant.Name, t.Tenant.ServerNames(t.Stack.Domain), t.AppPort)
}

// MigratingAppEnv is the environment of an app that migrates as it starts
// (contract.MigratingAppEnv).
func (t Parts) MigratingAppEnv() []string {
	return contract.MigratingAppEnv(t.Tenant.Name, t.Tenant.ServerNames(t.Stack.Domain), t.AppPort, t.Stack.AdminUser)
}

// Upstream is where the tenant's route sends requests: the app's name on
// the edge network, on the tenant's own port.
func (t Parts) Upstream() string { return contract.Upstream(t.Name("app"), t.AppPort) }

// MigrationEnv is the migration's environment (contract.MigrationEnv).
func (t Parts) MigrationEnv() []string {
	return contract.MigrationEnv(t.Tenant.Name, t.Stack.AdminUser)
}

// newBackup derives the tenant's backup secrets from the stack's key and
// renders its agent's config and restore request.
func newBackup(prefix string, t spec.Tenant, sb *StackBackup) *Backup {
	b := &Backup{StackBackup: sb}
	secret := func(f func(key string) string) pulumi.StringOutput {
		return pulumi.ToSecret(sb.Key.ApplyT(f)).(pulumi.StringOutput)
	}
	name := t.Name
	b.RepositoryURL = secret(func(k string) string {
		return contract.RepositoryURL(name, contract.TenantSecret(k, "gateway", name))
	})
	b.RepoKey = secret(func(k string) string { return contract.TenantSecret(k, "repository", name) })
	b.RestoreToken = secret(func(k string) string { return contract.TenantSecret(k, "restore", name) })
	copies := append([]string(nil), sb.Copies...)
	b.CopyTokens = secret(func(k string) string {
		var lines []string
		for _, c := range copies {
			lines = append(lines, contract.TenantSecret(k, "copy:"+c, name))
		}
		return strings.Join(lines, "\n") + "\n"
	})
	source := t.RestoreFrom
	b.SourceToken = secret(func(k string) string {
		if source == "" {
			return "\n"
		}
		return contract.TenantSecret(k, "copy:"+name, source)
	})
	cfg, _ := json.Marshal(contract.NewAgentConfig(prefix, name, sb.Spec.Schedule, sb.Spec.KeepDays, sb.Spec.KeepWeeks, source))
	b.Config = string(cfg)
	if t.Restore != "" {
		r := &Restore{ID: contract.RestoreID(name, source, t.Restore), To: t.Restore}
		req, _ := json.Marshal(contract.NewRestoreRequest(r.ID, r.To))
		if sb.PreRestore != (pulumi.StringOutput{}) {
			r.Request = sb.PreRestore.ApplyT(func(string) string { return string(req) }).(pulumi.StringOutput)
		} else {
			r.Request = pulumi.String(string(req)).ToStringOutput()
		}
		b.Restore = r
	}
	return b
}

// passwords are the tenant's database and admin passwords, both secret.
// They are derived from the stack's tenant key, which takes no resource per
// tenant: the engine checks and diffs every resource in every preview and
// update. A tenant an earlier version deployed keeps the two
// random.RandomPassword resources that made its passwords, until its
// rotation is raised, so an upgrade rotates no password.
func passwords(ctx *pulumi.Context, args Args, parent pulumi.ResourceOption) (db, admin pulumi.StringOutput, err error) {
	name, rotation := args.Tenant.Name, args.Tenant.Rotation
	if args.LegacyPasswords && rotation == 0 {
		dbPassword, err := random.NewRandomPassword(ctx, name+"-db-password", &random.RandomPasswordArgs{
			Length: pulumi.Int(32), Special: pulumi.Bool(false),
		}, parent)
		if err != nil {
			return db, admin, fmt.Errorf("tenant %s: database password: %w", name, err)
		}
		adminPassword, err := random.NewRandomPassword(ctx, name+"-admin-password", &random.RandomPasswordArgs{
			Length: pulumi.Int(24), Special: pulumi.Bool(false),
		}, parent)
		if err != nil {
			return db, admin, fmt.Errorf("tenant %s: admin password: %w", name, err)
		}
		// The provider marks results secret too; saying it here keeps them
		// secret whatever the provider version does.
		return pulumi.ToSecret(dbPassword.Result).(pulumi.StringOutput), pulumi.ToSecret(adminPassword.Result).(pulumi.StringOutput), nil
	}
	if args.Key.OutputState == nil {
		return db, admin, fmt.Errorf("tenant %s: no stack tenant key to derive its passwords from", name)
	}
	derive := func(purpose string, length int) pulumi.StringOutput {
		pw := args.Key.ApplyT(func(key string) string { return contract.TenantPassword(key, purpose, name, rotation, length) })
		return pulumi.ToSecret(pw).(pulumi.StringOutput)
	}
	return derive("db", 32), derive("admin", 24), nil
}
