// Package spec holds the stack's desired state as plain Go types: the tenants,
// the router settings and the images, parsed from stack config and validated.
//
// It imports no Pulumi package on purpose: everything here is checked by table
// tests without an engine, and every bad value is rejected before the program
// registers its first resource.
package spec

import (
	"net/netip"
	"sort"
	"strconv"
)

// Defaults for the optional stack config keys. Pulumi.yaml documents the same
// values; TestPulumiYAMLDefaults keeps the two in step.
const (
	DefaultDomain        = "polls.local"
	DefaultHTTPPort      = 8080
	DefaultHTTPSPort     = 8443
	DefaultPostgresImage = "postgres:17"
	DefaultNginxImage    = "nginx:1"
	DefaultAppMemoryMB   = 256
	DefaultDBMemoryMB    = 512
	DefaultAdminUser     = "admin"
	DefaultSubnetPool    = "10.230.0.0/16"
	DefaultPlatform      = PlatformDocker
	DefaultAppBuilder    = BuilderAuto
	DefaultMigrations    = MigrationsContainer
	// DefaultReplicas is a tenant's app replica count on Swarm: two, so a
	// node going down or a rolling update never leaves it without one.
	DefaultReplicas = 2
)

// The platforms a stack deploys to.
const (
	// PlatformDocker runs every tenant as containers on one Docker engine.
	PlatformDocker = "docker"
	// PlatformSwarm runs tenants as services on a Docker Swarm cluster,
	// through one of its managers' engines.
	PlatformSwarm = "swarm"
)

// The values of polls:appBuilder, the builder of the app image.
const (
	// BuilderAuto builds with BuildKit where the engine has it, with the
	// legacy builder elsewhere.
	BuilderAuto = "auto"
	// BuilderBuildKit always builds with BuildKit.
	BuilderBuildKit = "buildkit"
	// BuilderLegacy always builds with the legacy builder, which Docker
	// deprecated in 23.0.
	BuilderLegacy = "legacy"
)

// The values of polls:migrations, where a tenant's migration runs.
const (
	// MigrationsContainer runs each migration in a container of its own,
	// which exits before the app it gates is created.
	MigrationsContainer = "container"
	// MigrationsApp runs the migration in the app's container (on Swarm,
	// each of its tasks) as it starts, before it serves: one container
	// fewer per tenant to create, preview and replace in every release.
	MigrationsApp = "app"
)

// IsMigrations reports whether v is a value of polls:migrations.
func IsMigrations(v string) bool { return v == MigrationsContainer || v == MigrationsApp }

// Stack is the validated stack configuration.
type Stack struct {
	// Tenants are sorted by name, so everything derived from them is
	// deterministic whatever order the config lists them in.
	Tenants []Tenant
	// Domain is the parent domain: tenant thor answers at thor.<Domain>.
	Domain string
	// HTTPPort is the router's published HTTP port on the Docker host.
	HTTPPort int
	// HTTPSPort is the router's published HTTPS port; used only with TLS.
	HTTPSPort int
	// TLS, when set, makes the router terminate HTTPS and redirect HTTP.
	TLS *TLS
	// ACME, when set, makes the router terminate HTTPS with certificates
	// it issues and renews itself; never set together with TLS.
	ACME *ACME
	// PostgresImage and NginxImage are image references for the databases
	// and the router.
	PostgresImage string
	NginxImage    string
	// AppBuildArgs are passed to the app's Dockerfile.
	AppBuildArgs map[string]string
	// AppBuildNetwork is the network mode for RUN steps of the app build
	// ("" for Docker's default, "host" to reach a proxy on the host's loopback).
	AppBuildNetwork string
	// AppBuilder is BuilderAuto, BuilderBuildKit or BuilderLegacy.
	AppBuilder string
	// Migrations is MigrationsContainer or MigrationsApp.
	Migrations string
	// AppMemoryMB and DBMemoryMB are the default memory limits, in MiB, of a
	// tenant's app and database containers.
	AppMemoryMB int
	DBMemoryMB  int
	// AdminUser is the name of the admin account ensured in every tenant.
	AdminUser string
	// DockerHost is the Docker daemon to deploy to ("" uses DOCKER_HOST or
	// the local socket).
	DockerHost string
	// SubnetPool is the address range the tenants' private networks are
	// carved from, one /28 each (see package subnets). Docker platform only:
	// on Swarm the cluster's own address pool allocates overlay subnets.
	SubnetPool netip.Prefix
	// Platform is PlatformDocker or PlatformSwarm.
	Platform string
	// Registry is where the app image is pushed for the cluster's nodes to
	// pull, as host[:port][/path] (Swarm only).
	Registry string
	// RegistryAuth is the registry's credentials; nil for none.
	RegistryAuth *RegistryAuth
	// Backup is how databases are backed up; nil when backups are off.
	Backup *Backup
	// Monitoring is the stack's metrics and alerts; nil when off.
	Monitoring *Monitoring
}

// RegistryAuth is a registry user and password.
type RegistryAuth struct {
	Username string
	// Password is secret: callers wrap it in a Pulumi secret before use.
	Password string
}

// Tenant is one customer: its own database, migration, app and network.
type Tenant struct {
	// Name is a lower-case DNS label; every resource name derives from it.
	Name string
	// Hosts are extra host names the router sends to this tenant, besides
	// <Name>.<Domain>.
	Hosts []string
	// MemoryMB overrides the stack's AppMemoryMB for this tenant's app (0: use it).
	MemoryMB int
	// Image pins this tenant's app and migration to an image reference
	// instead of the image built from app/ ("" uses the build).
	Image string
	// Replicas is the app's replica count on Swarm (0: DefaultReplicas).
	Replicas int
	// Node is the Swarm node (hostname) the tenant's database is pinned to,
	// as its volume is node-local ("": keep where it is, or the least
	// loaded node for a new tenant; see package placement).
	Node string
	// Restore, when set, restores the tenant's database once to "latest"
	// or an RFC 3339 time (a new value restores again); RestoreFrom takes
	// the backups of that other tenant instead of the tenant's own.
	Restore     string
	RestoreFrom string
	// Rotation is the generation of the tenant's database and admin
	// passwords (0 first): a new value gives new ones (contract.TenantPassword).
	Rotation int
}

// TLS holds the router's certificate chain and private key, both PEM.
type TLS struct {
	CertificatePEM string
	// KeyPEM is secret: callers wrap it in a Pulumi secret before use.
	KeyPEM string
}

// ServerNames returns every host name the tenant answers to, its own
// <name>.<domain> first.
func (t Tenant) ServerNames(domain string) []string {
	return append([]string{t.Name + "." + domain}, t.Hosts...)
}

// AppMemory returns the tenant's app memory limit in MiB.
func (s Stack) AppMemory(t Tenant) int {
	if t.MemoryMB != 0 {
		return t.MemoryMB
	}
	return s.AppMemoryMB
}

// AppReplicas returns the tenant's app replica count on Swarm.
func (s Stack) AppReplicas(t Tenant) int {
	if t.Replicas != 0 {
		return t.Replicas
	}
	return DefaultReplicas
}

// AppImageName returns the repository the built app image is tagged with:
// local on one engine, in the registry on Swarm.
func (s Stack) AppImageName(prefix string) string {
	if s.Platform == PlatformSwarm {
		return s.Registry + "/" + prefix + "-app"
	}
	return prefix + "-app"
}

// HTTPS reports whether the router terminates HTTPS, with a given
// certificate or with ACME.
func (s Stack) HTTPS() bool { return s.TLS != nil || s.ACME != nil }

// Scheme returns "https" when the router terminates TLS, else "http".
func (s Stack) Scheme() string {
	if s.HTTPS() {
		return "https"
	}
	return "http"
}

// PublicPort returns the port users reach the router on.
func (s Stack) PublicPort() int {
	if s.HTTPS() {
		return s.HTTPSPort
	}
	return s.HTTPPort
}

// URL returns the base URL of a host name behind the router, leaving out
// the scheme's default port.
func (s Stack) URL(host string) string {
	port := s.PublicPort()
	if (!s.HTTPS() && port == 80) || (s.HTTPS() && port == 443) {
		return s.Scheme() + "://" + host + "/"
	}
	return s.Scheme() + "://" + host + ":" + strconv.Itoa(port) + "/"
}

func sortTenants(ts []Tenant) {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
}
