package config

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

// env returns a getenv that reads from m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// files returns a readFile that reads from m.
func files(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		s, ok := m[name]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		return []byte(s), nil
	}
}

func TestFromEnvDefaults(t *testing.T) {
	// Ensures unset settings get their documented defaults.
	c := FromEnv(env(nil))
	if c.ListenAddr != ":8000" || c.AdminUser != "admin" {
		t.Errorf("ListenAddr, AdminUser = %q, %q; want \":8000\", \"admin\"", c.ListenAddr, c.AdminUser)
	}
	if got, want := strings.Join(c.AllowedHosts, ","), "localhost,127.0.0.1,[::1]"; got != want {
		t.Errorf("AllowedHosts = %q; want %q", got, want)
	}
	if err := c.CheckServe(); err == nil || !strings.Contains(err.Error(), "TENANT") {
		t.Errorf("CheckServe() = %v; want an error naming TENANT", err)
	}
}

func TestResolveDatabaseURL(t *testing.T) {
	// Ensures exactly one of DATABASE_URL and DATABASE_URL_FILE is accepted,
	// the file's trailing newline is trimmed, and errors never leak the URL.
	secret := "postgres://u:s3cret@db/x"
	fsys := files(map[string]string{"/run/secrets/db": secret + "\n", "/empty": "\n"})
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{name: "neither", wantErr: "neither DATABASE_URL nor DATABASE_URL_FILE"},
		{name: "both", env: map[string]string{"DATABASE_URL": secret, "DATABASE_URL_FILE": "/run/secrets/db"}, wantErr: "both DATABASE_URL and DATABASE_URL_FILE"},
		{name: "url", env: map[string]string{"DATABASE_URL": secret}, want: secret},
		{name: "file", env: map[string]string{"DATABASE_URL_FILE": "/run/secrets/db"}, want: secret},
		{name: "missing file", env: map[string]string{"DATABASE_URL_FILE": "/nope"}, wantErr: "read DATABASE_URL_FILE"},
		{name: "empty file", env: map[string]string{"DATABASE_URL_FILE": "/empty"}, wantErr: "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromEnv(env(tt.env)).ResolveDatabaseURL(fsys)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ResolveDatabaseURL() error = %v; want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q leaks the password", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ResolveDatabaseURL() = %q, %v; want %q, nil", got, err, tt.want)
			}
		})
	}
}

func TestAdminPassword(t *testing.T) {
	// Ensures the password file is required, read, and only its line ending trimmed.
	fsys := files(map[string]string{"/pw": " pass word \r\n", "/empty": "\n"})
	if _, err := FromEnv(env(nil)).AdminPassword(fsys); err == nil {
		t.Error("AdminPassword() without ADMIN_PASSWORD_FILE succeeded; want error")
	}
	got, err := FromEnv(env(map[string]string{"ADMIN_PASSWORD_FILE": "/pw"})).AdminPassword(fsys)
	if err != nil || got != " pass word " {
		t.Errorf("AdminPassword() = %q, %v; want %q, nil", got, err, " pass word ")
	}
	_, err = FromEnv(env(map[string]string{"ADMIN_PASSWORD_FILE": "/missing"})).AdminPassword(fsys)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("AdminPassword() with a missing file = %v; want fs.ErrNotExist", err)
	}
	if _, err := FromEnv(env(map[string]string{"ADMIN_PASSWORD_FILE": "/empty"})).AdminPassword(fsys); err == nil {
		t.Error("AdminPassword() with an empty file succeeded; want error")
	}
}

func TestHealthcheckURL(t *testing.T) {
	// Ensures healthcheck calls loopback for wildcard listen addresses and the given host otherwise.
	tests := []struct{ listen, path, want string }{
		{":8000", "/readyz", "http://127.0.0.1:8000/readyz"},
		{"0.0.0.0:9000", "healthz", "http://127.0.0.1:9000/healthz"},
		{"[::1]:8000", "/readyz", "http://[::1]:8000/readyz"},
		{"127.0.0.2:80", "/x", "http://127.0.0.2:80/x"},
	}
	for _, tt := range tests {
		got, err := FromEnv(env(map[string]string{"LISTEN_ADDR": tt.listen})).HealthcheckURL(tt.path)
		if err != nil || got != tt.want {
			t.Errorf("HealthcheckURL(%q) with LISTEN_ADDR=%q = %q, %v; want %q", tt.path, tt.listen, got, err, tt.want)
		}
	}
	if _, err := FromEnv(env(map[string]string{"LISTEN_ADDR": "8000"})).HealthcheckURL("/"); err == nil {
		t.Error("HealthcheckURL with LISTEN_ADDR=8000 succeeded; want error")
	}
}

func TestHostAllowed(t *testing.T) {
	// Ensures Host matching follows Django's ALLOWED_HOSTS rules, ignoring ports.
	allowed := FromEnv(env(map[string]string{"ALLOWED_HOSTS": "Acme.example.com, .corp.test,[::1]"})).AllowedHosts
	tests := []struct {
		host string
		want bool
	}{
		{"acme.example.com", true},
		{"ACME.example.com:8443", true},
		{"acme.example.com.", true},
		{"evil.example.com", false},
		{"corp.test", true},
		{"a.b.corp.test:80", true},
		{"xcorp.test", false},
		{"[::1]:8000", true},
		{"", false},
	}
	for _, tt := range tests {
		if got := HostAllowed(allowed, tt.host); got != tt.want {
			t.Errorf("HostAllowed(%q) = %v; want %v", tt.host, got, tt.want)
		}
	}
	if !HostAllowed([]string{"*"}, "anything:1") {
		t.Error(`HostAllowed("*") rejected a host`)
	}
}
