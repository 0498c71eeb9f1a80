// Package backup is a tenant's backup agent: it streams the tenant's
// write-ahead log with PostgreSQL's pg_receivewal, takes base backups with
// pg_basebackup on a schedule, and keeps both in the tenant's own restic
// repository (encrypted, deduplicated, pruned by retention). It answers for
// its state (status, check), serves its database a restore to any moment
// its backups cover, and proves the backups with drills.
//
// The agent runs in its own container, on the tenant's private network
// (where it reaches the database by its alias) and on the stack's backup
// network (where it reaches the repository gateway). It holds its own
// tenant's keys only.
package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// Paths inside the agent container. The program delivers the config and the
// secrets as files; nothing secret is in the environment or arguments.
const (
	ConfigFile = "/run/secrets/polls-backup.json"
	SpoolDir   = "/spool"
)

// Config is what the program tells a tenant's agent.
type Config struct {
	// Tenant and Stack name what is backed up (the stack is the Docker
	// object prefix, e.g. polls-dev).
	Tenant string `json:"tenant"`
	Stack  string `json:"stack"`
	// Database is host:port of the tenant's PostgreSQL, User its role, and
	// PasswordFile where its password is.
	Database     string `json:"database"`
	DBName       string `json:"dbname"`
	User         string `json:"user"`
	PasswordFile string `json:"passwordFile"`
	// RepositoryFile holds the restic repository URL (with the gateway
	// login), PasswordFile the repository's key.
	RepositoryFile     string `json:"repositoryFile"`
	RepoPasswordFile   string `json:"repoPasswordFile"`
	RestoreTokenFile   string `json:"restoreTokenFile"`
	CopyTokensFile     string `json:"copyTokensFile,omitempty"`
	Schedule           string `json:"schedule"`
	KeepDays           int    `json:"keepDays"`
	KeepWeeks          int    `json:"keepWeeks"`
	WALIntervalSeconds int    `json:"walIntervalSeconds"`
	// Listen is the agent's HTTP address (restore, export, metrics).
	Listen string `json:"listen"`
	// Source, for a tenant restored from another tenant's backups, is that
	// tenant's agent (host:port on the backup network), and SourceTokenFile
	// the token it accepts from this tenant.
	Source          string `json:"source,omitempty"`
	SourceTokenFile string `json:"sourceTokenFile,omitempty"`
}

// LoadConfig reads and checks the config file at path.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("parse config %s: %w", path, err)
	}
	var problems []error
	if c.Tenant == "" || c.Database == "" || c.User == "" {
		problems = append(problems, errors.New("tenant, database and user are required"))
	}
	if _, err := ParseSchedule(c.Schedule); err != nil {
		problems = append(problems, err)
	}
	if c.KeepDays < 1 || c.KeepWeeks < 0 {
		problems = append(problems, fmt.Errorf("retention keeps no backup (days %d, weeks %d): keep at least 1 day", c.KeepDays, c.KeepWeeks))
	}
	if c.WALIntervalSeconds <= 0 {
		c.WALIntervalSeconds = 10
	}
	if c.DBName == "" {
		c.DBName = "postgres"
	}
	if c.Listen == "" {
		c.Listen = ":7070"
	}
	if err := errors.Join(problems...); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// WALInterval is how often received WAL is sent to the repository.
func (c Config) WALInterval() time.Duration { return time.Duration(c.WALIntervalSeconds) * time.Second }

// readSecret returns the trimmed content of a secret file.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s, nil
}
