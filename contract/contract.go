// Package contract is the container contract: what a tenant's containers
// and the router run and where they find things (commands, environment,
// health checks, file paths, the database URL, the router's config
// directory and DNS address, names and labels of Docker objects).
//
// The platforms (packages onehost and swarm), the router, and the
// generators of the benchmark baselines (tools/composegen, tools/stackgen)
// all read these values from here, so each is stated once. The app image's
// side is documented in app/README.md; the database follows the official
// postgres image's environment contract.
//
// The package is pure: it imports no Pulumi, so the generators build
// without the Pulumi SDK.
package contract

import (
	"fmt"
	"strconv"
	"strings"
)

// The app image.
const (
	// AppPort is where the app listens (LISTEN_ADDR=:8000).
	AppPort = 8000
	// AppBinary is the app image's binary, also its health check.
	AppBinary = "/usr/local/bin/polls"
)

// The database.
const (
	// DBUser and DBName are each tenant's database role and database; each
	// tenant has its own server, so the names need not differ.
	DBUser = "polls"
	DBName = "polls"
	// DBAlias is the database's name on the tenant's private network.
	DBAlias = "db"
	// DBPort is where PostgreSQL listens.
	DBPort = 5432
	// PGMount is where the data volume is mounted; PGData is the data
	// directory in it (PGDATA).
	PGMount = "/var/lib/postgresql/data"
	PGData  = PGMount + "/pgdata"
)

// Secret files: secrets are delivered as files, never as environment
// variables or arguments.
const (
	DBPasswordFile    = "/run/secrets/postgres-password"
	DatabaseURLFile   = "/run/secrets/database-url"
	AdminPasswordFile = "/run/secrets/admin-password"
)

// The router.
const (
	// RouterConfDir is nginx's conf.d in the router, where its config is
	// installed.
	RouterConfDir = "/etc/nginx/conf.d"
	// DockerDNS is Docker's embedded DNS server on user-defined networks,
	// which the router asks for the apps' addresses.
	DockerDNS = "127.0.0.11"
)

// AppCommand and MigrationCommand are what the app image runs: serve, or
// migrate the schema and ensure the admin account, then exit.
var (
	AppCommand       = []string{"serve"}
	MigrationCommand = []string{"migrate", "-createsuperuser"}
)

// AppHealthCommand is the app's health check, run inside its container.
var AppHealthCommand = []string{"CMD", AppBinary, "healthcheck"}

// AppEnv is the app's environment for tenant, answering to hosts: no
// secrets, only where to find them.
func AppEnv(tenant string, hosts []string) []string {
	return []string{
		"TENANT=" + tenant,
		"LISTEN_ADDR=:" + strconv.Itoa(AppPort),
		"ALLOWED_HOSTS=" + strings.Join(hosts, ","),
		"DATABASE_URL_FILE=" + DatabaseURLFile,
	}
}

// MigrationEnv is the migration's environment for tenant, ensuring the
// admin account adminUser.
func MigrationEnv(tenant, adminUser string) []string {
	return []string{
		"TENANT=" + tenant,
		"DATABASE_URL_FILE=" + DatabaseURLFile,
		"ADMIN_USER=" + adminUser,
		"ADMIN_PASSWORD_FILE=" + AdminPasswordFile,
	}
}

// DatabaseEnv is PostgreSQL's environment (the official image's contract).
func DatabaseEnv() []string {
	return []string{
		"POSTGRES_USER=" + DBUser,
		"POSTGRES_DB=" + DBName,
		"POSTGRES_PASSWORD_FILE=" + DBPasswordFile,
		"PGDATA=" + PGData,
	}
}

// DatabaseURL is the app's connection URL to its tenant's database, with
// password; the result is as secret as the password.
func DatabaseURL(password string) string {
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", DBUser, password, DBAlias, DBPort, DBName)
}

// DatabaseReadyCheck is the readiness half of DatabaseHealthScript: the
// server accepts TCP connections. During the image's first-run
// initialisation its temporary server listens on the socket only, so this
// also says initialisation is over.
const DatabaseReadyCheck = `pg_isready -q -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"`

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
const DatabaseHealthScript = DatabaseReadyCheck + ` || exit 1
sum=$(sha256sum < "$POSTGRES_PASSWORD_FILE")
[ "$sum" = "$(cat /tmp/polls-password-synced 2>/dev/null)" ] && exit 0
psql -qAtX -v ON_ERROR_STOP=1 -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" >/dev/null <<'SQL' || exit 1
\set pw ` + "`" + `cat "$POSTGRES_PASSWORD_FILE"` + "`" + `
ALTER ROLE CURRENT_USER PASSWORD :'pw';
SQL
printf '%s' "$sum" > /tmp/polls-password-synced`

// Upstream is the app's host:port on the edge network, given its name there.
func Upstream(host string) string { return host + ":" + strconv.Itoa(AppPort) }

// ObjectName is the Docker name of a tenant's part: "<prefix>-<tenant>-<part>",
// e.g. polls-dev-thor-db. prefix is "<project>-<stack>", so stacks can
// share a Docker host or cluster.
func ObjectName(prefix, tenant, part string) string { return prefix + "-" + tenant + "-" + part }

// NetworkName is the Docker name of a tenant's private network.
func NetworkName(prefix, tenant string) string { return ObjectName(prefix, tenant, "net") }

// VolumeName is the Docker name of a tenant's data volume.
func VolumeName(prefix, tenant string) string { return ObjectName(prefix, tenant, "pgdata") }

// Labels mark a tenant's part with its stack, tenant and role, for `docker
// ps --filter` and `docker service ls --filter`.
func Labels(prefix, tenant, role string) map[string]string {
	return map[string]string{LabelStack: prefix, LabelTenant: tenant, LabelRole: role}
}

// The labels every object of a stack carries.
const (
	LabelStack  = "polls.stack"
	LabelTenant = "polls.tenant"
	LabelRole   = "polls.role"
	// LabelRetained marks data volumes kept on tenant removal and destroy.
	LabelRetained = "polls.retained"
)

// The router's certificate companion (polls-agent acme, with polls:acmeEmail).
const (
	// ACMELiveDir is shared by the companion and the router (read-only
	// there): certs/<host>.crt and .key, and the HTTP-01 webroot.
	ACMELiveDir = "/var/lib/polls-acme/live"
	// ACMEStateDir is the companion's kept state: account, keys,
	// certificates, status.json.
	ACMEStateDir = "/var/lib/polls-acme/state"
	// ACMEHostsFile is the file in the router's conf.d that lists every
	// host of every tenant, "host tenant" per line, for the companion.
	ACMEHostsFile = "acme.hosts"
	// ACMESecretsDir is where the companion receives its secret files.
	ACMESecretsDir = "/run/secrets/acme"
)

// ACMEStatusCommand prints the companion's status.json.
var ACMEStatusCommand = []string{"polls-agent", "acme", "status", "--json"}
