package spec

// The container contract: names and paths inside the containers that the
// program, and anything else deploying the same images (tools/composegen),
// relies on. The app image's side is documented in app/README.md; the
// database follows the official postgres image's environment contract.
const (
	// AppPort is where the app listens (LISTEN_ADDR=:8000).
	AppPort = 8000
	// AppBinary is the app image's binary, also its health check.
	AppBinary = "/usr/local/bin/polls"
	// DBUser and DBName are each tenant's database role and database; each
	// tenant has its own server, so the names need not differ.
	DBUser = "polls"
	DBName = "polls"
	// DBAlias is the database's name on the tenant's private network.
	DBAlias = "db"
	// DBPasswordFile, DatabaseURLFile and AdminPasswordFile are where the
	// secrets are delivered as files, never as environment variables.
	DBPasswordFile    = "/run/secrets/postgres-password"
	DatabaseURLFile   = "/run/secrets/database-url"
	AdminPasswordFile = "/run/secrets/admin-password"
	// PGMount is where the data volume is mounted; PGDATA is a directory in it.
	PGMount = "/var/lib/postgresql/data"
)
