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
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The app image.
const (
	// AppPort is where the app listens on Swarm, whose services the router
	// reaches by name (LISTEN_ADDR=:8000). On one host each tenant's app
	// gets a port of its own (package ports), in the app's LabelPort.
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
// MigratingAppCommand does both in one container: it migrates and ensures
// the admin account as MigrationCommand does, then serves, and exits
// without serving if that failed (polls:migrations app).
var (
	AppCommand          = []string{"serve"}
	MigrationCommand    = []string{"migrate", "-createsuperuser"}
	MigratingAppCommand = []string{"serve", "-migrate"}
)

// AppHealthCommand is the app's health check, run inside its container.
var AppHealthCommand = []string{"CMD", AppBinary, "healthcheck"}

// AppEnv is the app's environment for tenant, answering to hosts on port:
// no secrets, only where to find them.
func AppEnv(tenant string, hosts []string, port int) []string {
	return []string{
		"TENANT=" + tenant,
		"LISTEN_ADDR=:" + strconv.Itoa(port),
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

// MigratingAppEnv is the environment of an app that migrates as it starts:
// the app's, and the admin account the migration ensures.
func MigratingAppEnv(tenant string, hosts []string, port int, adminUser string) []string {
	return append(AppEnv(tenant, hosts, port), "ADMIN_USER="+adminUser, "ADMIN_PASSWORD_FILE="+AdminPasswordFile)
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

// Upstream is the app's host:port on the edge network, given its name there
// and its port.
func Upstream(host string, port int) string { return host + ":" + strconv.Itoa(port) }

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
	// LabelPort is the port a tenant's app listens on (package ports).
	LabelPort = "polls.port"
	// LabelRetained marks data volumes kept on tenant removal and destroy.
	LabelRetained = "polls.retained"
	// LabelSecrets, set to SecretsDerived, marks the object that says how
	// a tenant's passwords are made (its network on one engine, its
	// database's service on Swarm): derived from the stack's tenant key
	// (TenantPassword). A tenant deployed before, whose object lacks it,
	// keeps the random.RandomPassword resources that made its passwords,
	// so an upgrade rotates none.
	LabelSecrets   = "polls.secrets"
	SecretsDerived = "derived"
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

// The backups: the stack's own images (built from agent/), each tenant's
// backup agent, the stack's repository gateway.
const (
	// AgentBinary is the agent image's entrypoint; BackupBinary, beside
	// it, the backup role alone, which the tenants' agents run.
	AgentBinary  = "polls-agent"
	BackupBinary = "polls-backup"
	// AgentAlias is the backup agent's name on its tenant's network, where
	// the database asks it for restores; AgentPort where it listens.
	AgentAlias = "backup"
	AgentPort  = 7070
	// GatewayAlias and GatewayPort reach the stack's repository gateway on
	// the backup network.
	GatewayAlias = "gateway"
	GatewayPort  = 8000
	// SpoolMount is the agent's volume: the write-ahead log received and
	// not yet sent, its state, restic's cache.
	SpoolMount = "/spool"
	// SlotsMount is the volume all the stack's agents share: the lock files
	// that bound how many base backups run at once on the engine
	// (agent/backup.SlotsDir).
	SlotsMount = "/slots"
	// GatewayRepository is where a local repository is mounted in the
	// gateway.
	GatewayRepository = "/repository"
	// GatewayLoginsDir is where the gateway reads its logins file,
	// GatewayHtpasswd, from a volume that an installer writes.
	GatewayLoginsDir = "/run/polls/logins"
	GatewayHtpasswd  = "htpasswd"
)

// Files delivered to the backup agent, the gateway and the database.
const (
	AgentConfigFile       = "/run/secrets/polls-backup.json"
	AgentRepositoryFile   = "/run/secrets/backup-repository"
	AgentRepoKeyFile      = "/run/secrets/backup-key"
	AgentRestoreTokenFile = "/run/secrets/backup-restore-token"
	AgentCopyTokensFile   = "/run/secrets/backup-copy-tokens"
	AgentSourceTokenFile  = "/run/secrets/backup-source-token"
	GatewaySSHKeyFile     = "/run/secrets/sftp-key"
	GatewayKnownHostsFile = "/run/secrets/known-hosts"
	// RestoreRequestFile asks the database's entrypoint for a restore,
	// RestoreTokenFile authorises it with the tenant's agent.
	RestoreRequestFile = "/run/secrets/polls-restore.json"
	RestoreTokenFile   = "/run/secrets/polls-restore-token"
)

// AgentEntrypoint and AgentCommand run a tenant's backup agent: polls-backup,
// the backup role alone, one per tenant, without polls-agent's ACME code
// (agent/cmd/polls-backup says what that saves). `polls-agent backup ...`
// runs the same commands for operators.
var (
	AgentEntrypoint = []string{BackupBinary}
	AgentCommand    = []string{"agent"}
)

// AgentStateFile is where the agent keeps its state, with its own verdict
// on its tenant's backups; `pulumi preview` reads it through the engine's
// archive API. The agents have no Docker health check: each check is a
// process the engine starts in the container (runc, dockerd and
// containerd: about 0.4 CPU-s on the bench host), every interval, for
// every tenant, idle or not.
const AgentStateFile = SpoolMount + "/state.json"

// AgentStaleAfter is how long an agent that runs may leave its state
// unwritten before it is reported as stuck: it writes it at least every
// 30 s (agent/backup.Check has the same bound).
const AgentStaleAfter = 2 * time.Minute

// AgentStatus is what the program reads of an agent's state file
// (agent/backup.State): when it wrote it, and what it found wrong then.
type AgentStatus struct {
	Updated  time.Time `json:"updated"`
	Problems []string  `json:"problems,omitempty"`
}

// Verdict is what is wrong with the tenant's backups at now, one
// sentence each; none means they are kept as the schedule says.
func (s AgentStatus) Verdict(now time.Time) []string {
	if now.Sub(s.Updated) > AgentStaleAfter {
		return append([]string{"the agent has not updated its state since " + s.Updated.UTC().Format(time.RFC3339)}, s.Problems...)
	}
	return s.Problems
}

// AgentConfig is what a tenant's backup agent reads from AgentConfigFile
// (agent/backup.Config).
type AgentConfig struct {
	Tenant             string `json:"tenant"`
	Stack              string `json:"stack"`
	Database           string `json:"database"`
	DBName             string `json:"dbname"`
	User               string `json:"user"`
	PasswordFile       string `json:"passwordFile"`
	RepositoryFile     string `json:"repositoryFile"`
	RepoPasswordFile   string `json:"repoPasswordFile"`
	RestoreTokenFile   string `json:"restoreTokenFile"`
	CopyTokensFile     string `json:"copyTokensFile,omitempty"`
	Schedule           string `json:"schedule"`
	KeepDays           int    `json:"keepDays"`
	KeepWeeks          int    `json:"keepWeeks"`
	WALIntervalSeconds int    `json:"walIntervalSeconds"`
	Listen             string `json:"listen"`
	Source             string `json:"source,omitempty"`
	SourceTokenFile    string `json:"sourceTokenFile,omitempty"`
}

// NewAgentConfig is the config of tenant's agent in stack prefix. source,
// if set, is the tenant whose backups it restores from.
func NewAgentConfig(prefix, tenant, schedule string, keepDays, keepWeeks int, source string) AgentConfig {
	c := AgentConfig{
		Tenant: tenant, Stack: prefix, Database: DBAlias + ":" + strconv.Itoa(DBPort), DBName: DBName, User: DBUser,
		PasswordFile: DBPasswordFile, RepositoryFile: AgentRepositoryFile, RepoPasswordFile: AgentRepoKeyFile,
		RestoreTokenFile: AgentRestoreTokenFile, CopyTokensFile: AgentCopyTokensFile,
		Schedule: schedule, KeepDays: keepDays, KeepWeeks: keepWeeks, WALIntervalSeconds: 10,
		Listen: ":" + strconv.Itoa(AgentPort),
	}
	if source != "" {
		c.Source = AgentName(prefix, source) + ":" + strconv.Itoa(AgentPort)
		c.SourceTokenFile = AgentSourceTokenFile
	}
	return c
}

// AgentName is the Docker name of tenant's backup agent; on the backup
// network other agents reach it by it.
func AgentName(prefix, tenant string) string { return ObjectName(prefix, tenant, "backup") }

// RestoreRequest is what the database's entrypoint reads from
// RestoreRequestFile: restore id, once, to "latest" or an RFC 3339 time.
type RestoreRequest struct {
	ID        string `json:"id"`
	To        string `json:"to"`
	Agent     string `json:"agent"`
	TokenFile string `json:"tokenFile"`
}

// NewRestoreRequest asks for restore id to the moment to.
func NewRestoreRequest(id, to string) RestoreRequest {
	return RestoreRequest{ID: id, To: to, Agent: "http://" + AgentAlias + ":" + strconv.Itoa(AgentPort), TokenFile: RestoreTokenFile}
}

// RestoreID names a restore: a new source or moment is a new restore.
func RestoreID(tenant, source, to string) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + source + "\x00" + to))
	return hex.EncodeToString(sum[:6])
}

// TenantSecret derives one of a tenant's backup secrets from the stack's
// backup key: its repository key ("repository"), its gateway login
// ("gateway"), its restore token ("restore"), or the token a copy presents
// to it ("copy:<copy>"). Derived, not generated, they come back the same
// for a tenant removed and added back, and for a stack destroyed and
// brought up again with the same key: its backups stay readable.
func TenantSecret(key, purpose, tenant string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("polls backup\x00" + purpose + "\x00" + tenant))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// TenantPassword derives a tenant's generated password from the stack's
// tenant key: its database role's ("db") or its admin account's ("admin"),
// length letters and digits, the same on every run. rotation is the
// tenant's polls:tenants.<name>.rotation: raising it gives new passwords.
// Derived, not generated, they cost no resource per tenant; the key is one
// random.RandomPassword in the stack's state.
func TenantPassword(key, purpose, tenant string, rotation, length int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, 0, length)
	for block := 0; len(out) < length; block++ {
		m := hmac.New(sha256.New, []byte(key))
		fmt.Fprintf(m, "polls tenant\x00%s\x00%s\x00%d\x00%d", purpose, tenant, rotation, block)
		for _, b := range m.Sum(nil) {
			// 248 = 4 * 62: every letter and digit equally likely.
			if b < 248 && len(out) < length {
				out = append(out, alphabet[b%62])
			}
		}
	}
	return string(out)
}

// HtpasswdLine is the gateway's login line for user: SHA-1 of a derived,
// 256-bit secret, which needs no salt, so the file is the same on every
// run and the gateway is replaced only when the tenants change.
func HtpasswdLine(user, password string) string {
	sum := sha1.Sum([]byte(password))
	return user + ":{SHA}" + base64.StdEncoding.EncodeToString(sum[:])
}

// RepositoryURL is the restic repository of tenant behind the gateway,
// with its login: a secret.
func RepositoryURL(tenant, password string) string {
	return fmt.Sprintf("rest:http://%s:%s@%s:%d/%s/", tenant, password, GatewayAlias, GatewayPort, tenant)
}

// Monitoring (polls:monitoring): the stack's metrics exporter, Prometheus
// and Alertmanager, on the monitoring network.
const (
	// MetricsAlias and MetricsPort reach the metrics exporter (the
	// router's per-tenant requests, the engine's view of every tenant).
	MetricsAlias = "metrics"
	MetricsPort  = 9100
	// RouterMetricsDir is a volume of the router and the exporter only;
	// the exporter listens on RouterMetricsSocket there, and nginx sends it
	// one line per request.
	RouterMetricsDir    = "/run/polls-metrics"
	RouterMetricsSocket = RouterMetricsDir + "/nginx.sock"
	// RouterNoTenant is the tenant label of requests for a host no tenant
	// has (the router's default server); no tenant can be named so.
	RouterNoTenant = "_none"
	// PrometheusAlias, PrometheusPort, AlertmanagerAlias and
	// AlertmanagerPort reach them on the monitoring network.
	PrometheusAlias   = "prometheus"
	PrometheusPort    = 9090
	AlertmanagerAlias = "alertmanager"
	AlertmanagerPort  = 9093
	// Where their configuration and data are, as in the official images.
	PrometheusConfigFile   = "/etc/prometheus/prometheus.yml"
	PrometheusRulesFile    = "/etc/prometheus/rules.yml"
	PrometheusTargetsDir   = "/etc/prometheus/targets"
	PrometheusDataDir      = "/prometheus"
	AlertmanagerConfigFile = "/etc/alertmanager/alertmanager.yml"
	AlertmanagerDataDir    = "/alertmanager"
	// AlertWebhookTokenFile is the webhook receiver's token in
	// Alertmanager's container.
	AlertWebhookTokenFile = "/run/secrets/alert-webhook-token"
	// AgentMetricsPath is where a backup agent serves its tenant's
	// database and backup metrics, on AgentPort.
	AgentMetricsPath = "/metrics"
)
