// Package config reads the app's settings from the environment once, into
// a typed struct. It does no I/O beyond reading the files that the
// environment names.
package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Defaults for settings that may be left unset.
const (
	DefaultListenAddr   = ":8000"
	DefaultAdminUser    = "admin"
	DefaultAllowedHosts = "localhost,127.0.0.1,[::1]"
)

// Config is the environment of one polls process. Every field comes from
// the environment variable named in its comment.
type Config struct {
	// Tenant (TENANT) is the tenant's name, shown on every page and logged
	// on every line. Required by serve.
	Tenant string
	// ListenAddr (LISTEN_ADDR) is the address serve listens on and the
	// port healthcheck calls. Default ":8000".
	ListenAddr string
	// AllowedHosts (ALLOWED_HOSTS) are the Host header values the server
	// answers, comma-separated: exact names, ".example.com" for a domain
	// and its subdomains, or "*" for any. Default "localhost,127.0.0.1,[::1]".
	AllowedHosts []string
	// DatabaseURL (DATABASE_URL) is the PostgreSQL connection string.
	DatabaseURL string
	// DatabaseURLFile (DATABASE_URL_FILE) names a file holding the
	// connection string. Exactly one of DatabaseURL and DatabaseURLFile
	// must be set.
	DatabaseURLFile string
	// AdminUser (ADMIN_USER) is the administrator's username. Default "admin".
	AdminUser string
	// AdminPasswordFile (ADMIN_PASSWORD_FILE) names the file holding the
	// administrator's password. Required by createsuperuser.
	AdminPasswordFile string
}

// FromEnv reads the settings through getenv and applies defaults. It reads
// no files and fails on nothing: the commands ask for what they need.
func FromEnv(getenv func(string) string) Config {
	c := Config{
		Tenant:            strings.TrimSpace(getenv("TENANT")),
		ListenAddr:        getenv("LISTEN_ADDR"),
		DatabaseURL:       getenv("DATABASE_URL"),
		DatabaseURLFile:   getenv("DATABASE_URL_FILE"),
		AdminUser:         strings.TrimSpace(getenv("ADMIN_USER")),
		AdminPasswordFile: getenv("ADMIN_PASSWORD_FILE"),
	}
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.AdminUser == "" {
		c.AdminUser = DefaultAdminUser
	}
	hosts := getenv("ALLOWED_HOSTS")
	if strings.TrimSpace(hosts) == "" {
		hosts = DefaultAllowedHosts
	}
	for h := range strings.SplitSeq(hosts, ",") {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			c.AllowedHosts = append(c.AllowedHosts, h)
		}
	}
	return c
}

// CheckServe reports the first setting serve cannot run without.
func (c Config) CheckServe() error {
	if c.Tenant == "" {
		return errors.New("TENANT is not set: set it to the tenant's name")
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("LISTEN_ADDR %q is not host:port: %w", c.ListenAddr, err)
	}
	return nil
}

// ResolveDatabaseURL returns the connection string from DATABASE_URL or
// from the file DATABASE_URL_FILE names, with surrounding whitespace
// trimmed. Exactly one of the two must be set. Errors never contain the
// connection string.
func (c Config) ResolveDatabaseURL(readFile func(string) ([]byte, error)) (string, error) {
	switch {
	case c.DatabaseURL != "" && c.DatabaseURLFile != "":
		return "", errors.New("both DATABASE_URL and DATABASE_URL_FILE are set: set only one")
	case c.DatabaseURL != "":
		return strings.TrimSpace(c.DatabaseURL), nil
	case c.DatabaseURLFile != "":
		b, err := readFile(c.DatabaseURLFile)
		if err != nil {
			return "", fmt.Errorf("read DATABASE_URL_FILE: %w", err)
		}
		url := strings.TrimSpace(string(b))
		if url == "" {
			return "", fmt.Errorf("DATABASE_URL_FILE %s is empty", c.DatabaseURLFile)
		}
		return url, nil
	default:
		return "", errors.New("neither DATABASE_URL nor DATABASE_URL_FILE is set: set one")
	}
}

// AdminPassword returns the password in the file ADMIN_PASSWORD_FILE
// names, without its trailing newline.
func (c Config) AdminPassword(readFile func(string) ([]byte, error)) (string, error) {
	if c.AdminPasswordFile == "" {
		return "", errors.New("ADMIN_PASSWORD_FILE is not set: point it at a file holding the admin password")
	}
	b, err := readFile(c.AdminPasswordFile)
	if err != nil {
		return "", fmt.Errorf("read ADMIN_PASSWORD_FILE: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("ADMIN_PASSWORD_FILE %s is empty", c.AdminPasswordFile)
	}
	return pw, nil
}

// HealthcheckURL returns the URL healthcheck GETs for path: the loopback
// address when ListenAddr listens on all interfaces, its host otherwise.
func (c Config) HealthcheckURL(path string) (string, error) {
	host, port, err := net.SplitHostPort(c.ListenAddr)
	if err != nil {
		return "", fmt.Errorf("LISTEN_ADDR %q is not host:port: %w", c.ListenAddr, err)
	}
	if port == "" || port == "0" {
		return "", fmt.Errorf("LISTEN_ADDR %q has no fixed port", c.ListenAddr)
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "127.0.0.1"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}
