package contract

import (
	"crypto/sha1"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// TestDatabaseURL ensures the app's URL names the tenant's role, database
// and the database's alias on the tenant network, with the password.
func TestDatabaseURL(t *testing.T) {
	if got, want := DatabaseURL("s3cret"), "postgres://polls:s3cret@db:5432/polls?sslmode=disable"; got != want {
		t.Errorf("DatabaseURL = %q; want %q", got, want)
	}
	if !strings.HasPrefix(DatabaseHealthScript, DatabaseReadyCheck+" || exit 1\n") {
		t.Errorf("the health script does not start with the readiness check compose runs")
	}
}

// TestTenantSecret ensures a tenant's backup secrets come back the same
// from the same key (a tenant added back reads its backups), differ by
// purpose, tenant and key, and are 256-bit and URL-safe.
func TestTenantSecret(t *testing.T) {
	a := TenantSecret("key-1", "repository", "thor")
	if again := TenantSecret("key-1", "repository", "thor"); again != a {
		t.Errorf("TenantSecret is not deterministic: %q, %q", a, again)
	}
	for _, other := range []string{TenantSecret("key-1", "gateway", "thor"), TenantSecret("key-1", "repository", "potter"), TenantSecret("key-2", "repository", "thor")} {
		if other == a {
			t.Errorf("two different secrets are equal: %q", a)
		}
	}
	if b, err := base64.RawURLEncoding.DecodeString(a); err != nil || len(b) != 32 {
		t.Errorf("TenantSecret = %q: %d bytes, %v; want 32 URL-safe bytes", a, len(b), err)
	}
}

// TestTenantPassword ensures a tenant's derived passwords are stable,
// letters and digits of the length asked, longer than one HMAC block gives
// when asked, and differ with each input (a raised rotation is a new
// password).
func TestTenantPassword(t *testing.T) {
	a := TenantPassword("key-1", "db", "thor", 0, 32)
	if again := TenantPassword("key-1", "db", "thor", 0, 32); again != a {
		t.Errorf("TenantPassword is not deterministic: %q, %q", a, again)
	}
	for _, other := range []string{
		TenantPassword("key-1", "admin", "thor", 0, 32), TenantPassword("key-1", "db", "potter", 0, 32),
		TenantPassword("key-2", "db", "thor", 0, 32), TenantPassword("key-1", "db", "thor", 1, 32),
	} {
		if other == a {
			t.Errorf("two different passwords are equal: %q", a)
		}
	}
	for _, n := range []int{24, 32, 100} {
		pw := TenantPassword("key-1", "db", "thor", 0, n)
		if len(pw) != n || strings.Trim(pw, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" {
			t.Errorf("TenantPassword(length %d) = %q; want %d letters and digits", n, pw, n)
		}
	}
	if long := TenantPassword("key-1", "db", "thor", 0, 100); !strings.HasPrefix(long, a) {
		t.Errorf("a longer password does not extend the shorter one: %q, %q", long, a)
	}
}

// TestHtpasswdLine ensures the gateway's login line is the {SHA} form
// rclone reads: the base64 of the password's SHA-1.
func TestHtpasswdLine(t *testing.T) {
	sum := sha1.Sum([]byte("pw"))
	if got, want := HtpasswdLine("thor", "pw"), "thor:{SHA}"+base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Errorf("HtpasswdLine = %q; want %q", got, want)
	}
	if got := RepositoryURL("thor", "pw"); got != "rest:http://thor:pw@gateway:8000/thor/" {
		t.Errorf("RepositoryURL = %q", got)
	}
}

// TestAgentVerdict ensures a state written within AgentStaleAfter carries
// the agent's own problems only, and an older one names the stuck agent.
func TestAgentVerdict(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	fresh := AgentStatus{Updated: now.Add(-90 * time.Second)}
	if v := fresh.Verdict(now); len(v) != 0 {
		t.Errorf("a state written 90 s ago without problems: %v; want none", v)
	}
	fresh.Problems = []string{"repository failing since …"}
	if v := fresh.Verdict(now); len(v) != 1 || v[0] != fresh.Problems[0] {
		t.Errorf("Verdict = %v; want the agent's problem", v)
	}
	stale := AgentStatus{Updated: now.Add(-3 * time.Minute)}
	if v := stale.Verdict(now); len(v) != 1 || v[0] != "the agent has not updated its state since 2026-11-30T11:57:00Z" {
		t.Errorf("a state written 3 min ago: %v; want it named stuck", v)
	}
}
