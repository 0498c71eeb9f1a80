package spec

import (
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// Backup defaults. Pulumi.yaml documents the same values.
const (
	DefaultBackupRepository = "/var/lib/polls-backups"
	DefaultBackupSchedule   = "daily"
	DefaultBackupKeepDays   = 7
	DefaultBackupKeepWeeks  = 4
)

// Backup is how the tenants' databases are backed up: continuously (every
// change to the write-ahead log within seconds) plus a base backup on a
// schedule, encrypted, into a repository.
type Backup struct {
	// Repository is where backups go.
	Repository Repository
	// Schedule is how often a base backup is taken: hourly, daily, weekly
	// or a duration (Interval).
	Schedule string
	Interval time.Duration
	// KeepDays is how many days back every moment stays restorable;
	// KeepWeeks how many weeks before that keep one base backup each.
	KeepDays  int
	KeepWeeks int
	// Key is the stack's backup key, from which each tenant's repository
	// key is derived; "" lets the program generate one. Secret.
	Key string
}

// Repository is a backup repository: a directory on the Docker host, or a
// directory on an SFTP server.
type Repository struct {
	// Kind is RepositoryLocal or RepositorySFTP.
	Kind string
	// Path is the directory: on the Docker host, or on the SFTP server.
	Path string
	// User, Host and Port reach the SFTP server.
	User string
	Host string
	Port int
	// SSHKey is the SFTP login's private key (secret), KnownHosts the
	// server's host key lines, as in ~/.ssh/known_hosts.
	SSHKey     string
	KnownHosts string
}

// The kinds of repository.
const (
	RepositoryLocal = "local"
	RepositorySFTP  = "sftp"
)

// String is the repository as configured, without secrets.
func (r Repository) String() string {
	if r.Kind == RepositorySFTP {
		return fmt.Sprintf("sftp://%s@%s:%d%s", r.User, r.Host, r.Port, r.Path)
	}
	return r.Path
}

// RestoreLatest restores a tenant to the latest state its backups hold.
const RestoreLatest = "latest"

// backup reads the polls:backup* keys; nil when backups are off.
func (p *parser) backup(platform string) *Backup {
	on := true
	if v, ok := p.values["backups"]; ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			p.addf("polls:backups: %q is not true or false: backups are on by default; turn them off with `pulumi config set polls:backups false`", v)
		}
		on = err != nil || b
	}
	keys := []string{"backupRepository", "backupSchedule", "backupKeepDays", "backupKeepWeeks", "backupKey", "backupSshKey", "backupSshKnownHosts"}
	if !on {
		for _, k := range keys {
			if strings.TrimSpace(p.values[k]) != "" && p.values[k] != p.defaultOf(k) {
				p.addf("polls:%s: set while polls:backups is false: remove it with `pulumi config rm polls:%s`, or turn backups on", k, k)
			}
		}
		return nil
	}
	b := &Backup{
		Schedule:  strings.TrimSpace(p.str("backupSchedule", DefaultBackupSchedule)),
		Key:       p.values["backupKey"],
		KeepDays:  DefaultBackupKeepDays,
		KeepWeeks: DefaultBackupKeepWeeks,
	}
	if n, ok := p.int("backupKeepDays", DefaultBackupKeepDays); ok {
		if n < 1 || n > 3650 {
			p.addf("polls:backupKeepDays: %d is not accepted: every moment of the last N days stays restorable; use 1 to 3650", n)
		}
		b.KeepDays = n
	}
	if n, ok := p.int("backupKeepWeeks", DefaultBackupKeepWeeks); ok {
		if n < 0 || n > 520 {
			p.addf("polls:backupKeepWeeks: %d is not accepted: use 0 to 520 weekly base backups kept beyond polls:backupKeepDays", n)
		}
		b.KeepWeeks = n
	}
	interval, err := parseSchedule(b.Schedule)
	if err != nil {
		p.addf("polls:backupSchedule: %v", err)
	}
	b.Interval = interval
	if interval > 0 && time.Duration(b.KeepDays)*24*time.Hour < interval {
		p.addf("polls:backupKeepDays: %d days keep less than one base backup taken %s: keep at least %d days, or back up more often", b.KeepDays, b.Schedule, int((interval+24*time.Hour-1)/(24*time.Hour)))
	}
	if k := b.Key; k != "" && len(strings.TrimSpace(k)) < 16 {
		p.addf("polls:backupKey: shorter than 16 characters: use a long random value, e.g. `pulumi config set --secret polls:backupKey \"$(openssl rand -base64 32)\"`")
	}
	b.Repository = p.repository()
	return b
}

// parseSchedule reads hourly, daily, weekly or a duration from 15m to 168h;
// the backup agent reads the same values.
func parseSchedule(s string) (time.Duration, error) {
	switch s {
	case "daily":
		return 24 * time.Hour, nil
	case "hourly":
		return time.Hour, nil
	case "weekly":
		return 7 * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 15*time.Minute || d > 7*24*time.Hour {
		return 0, fmt.Errorf("%q is not a schedule: use hourly, daily, weekly or a duration from 15m to 168h, e.g. 6h", s)
	}
	return d, nil
}

// repository reads polls:backupRepository and the SFTP login.
func (p *parser) repository() Repository {
	raw := strings.TrimSpace(p.str("backupRepository", DefaultBackupRepository))
	key, known := p.values["backupSshKey"], strings.TrimSpace(p.values["backupSshKnownHosts"])
	if strings.HasPrefix(raw, "/") {
		clean := path.Clean(raw)
		if clean == "/" || strings.ContainsAny(clean, ":,\"'\\ \t\n") {
			p.addf("polls:backupRepository: %q is not accepted: use an absolute directory on the Docker host (not /, no ':', ',', quotes or spaces), e.g. %s", raw, DefaultBackupRepository)
		}
		if strings.TrimSpace(key) != "" || known != "" {
			p.addf("polls:backupSshKey and polls:backupSshKnownHosts: used only with an sftp:// repository: remove them, or set polls:backupRepository to sftp://user@host/path")
		}
		return Repository{Kind: RepositoryLocal, Path: clean}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "sftp" || u.Host == "" || u.User == nil || u.User.Username() == "" || u.Path == "" || u.RawQuery != "" || u.Fragment != "" {
		p.addf("polls:backupRepository: %q is not a repository: use a directory on the Docker host (e.g. %s) or sftp://user@host[:port]/path", raw, DefaultBackupRepository)
		return Repository{}
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		p.addf("polls:backupRepository: has a password in the URL: log in with a key instead, `pulumi config set --secret polls:backupSshKey -- \"$(cat id_ed25519)\"`, and drop the password from the URL")
	}
	r := Repository{Kind: RepositorySFTP, User: u.User.Username(), Host: u.Hostname(), Port: 22, Path: path.Clean(u.Path), SSHKey: key, KnownHosts: known}
	if ps := u.Port(); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 {
			p.addf("polls:backupRepository: port %q is out of range: use 1 to 65535", ps)
		}
		r.Port = n
	}
	if !isHostname(r.Host) && !isIP(r.Host) {
		p.addf("polls:backupRepository: %q is not a host name or address", r.Host)
	}
	if !dnsLabel.MatchString(strings.ReplaceAll(r.User, "_", "-")) || strings.ContainsAny(r.Path, ":,\"'\\ \t\n") {
		p.addf("polls:backupRepository: user %q or path %q is not accepted: use a user of a-z, 0-9, '-', '_' and a path without ':', ',', quotes or spaces", r.User, r.Path)
	}
	if strings.TrimSpace(key) == "" {
		p.addf("polls:backupSshKey: missing for the sftp:// repository: give the private key the server accepts for %s, `pulumi config set --secret polls:backupSshKey -- \"$(cat id_ed25519)\"`", r.User)
	} else if !strings.Contains(key, "PRIVATE KEY-----") {
		p.addf("polls:backupSshKey: not a PEM or OpenSSH private key: expected a block starting with -----BEGIN ... PRIVATE KEY-----")
	}
	if known == "" {
		p.addf("polls:backupSshKnownHosts: missing for the sftp:// repository: pin the server's host key, e.g. `pulumi config set polls:backupSshKnownHosts -- \"$(ssh-keyscan -p %d %s)\"`", r.Port, r.Host)
	}
	return r
}

// restores checks the tenants' restore settings: a time not in the future,
// and a source tenant that exists and is not the tenant itself.
func (p *parser) restores(s Stack) {
	names := map[string]bool{}
	for _, t := range s.Tenants {
		names[t.Name] = true
	}
	for _, t := range s.Tenants {
		where := "polls:tenants." + t.Name
		if t.Restore == "" && t.RestoreFrom == "" {
			continue
		}
		if s.Backup == nil {
			p.addf("%s: restore needs backups: remove the tenant's restore settings, or turn backups on (`pulumi config rm polls:backups`)", where)
			continue
		}
		if t.RestoreFrom != "" && (!names[t.RestoreFrom] || t.RestoreFrom == t.Name) {
			p.addf("%s: restoreFrom %q is not another tenant of this stack: name the tenant whose backups to copy", where, t.RestoreFrom)
		}
		if t.RestoreFrom != "" && t.Restore == "" {
			p.addf("%s: restoreFrom needs restore: say to which moment, \"latest\" or a time such as %s", where, p.now().UTC().Add(-time.Hour).Format(time.RFC3339))
		}
		if t.Restore == "" || t.Restore == RestoreLatest {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, t.Restore)
		switch {
		case err != nil:
			p.addf("%s: restore %q is not a moment: use \"latest\" or an RFC 3339 time with its zone, e.g. %s", where, t.Restore, p.now().UTC().Add(-time.Hour).Format(time.RFC3339))
		case at.After(p.now()):
			p.addf("%s: restore %s is in the future: use a past moment, or \"latest\"", where, t.Restore)
		}
	}
}

func isIP(s string) bool {
	for _, r := range s {
		if (r < '0' || r > '9') && r != '.' && r != ':' && (r < 'a' || r > 'f') {
			return false
		}
	}
	return strings.ContainsAny(s, ".:")
}
