package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polls-tenants/polls/agent/acme"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCertificates ensures the companion's status.json becomes one series
// per host, labelled with its tenant: the expiry of a served certificate,
// whether one is served, and since when a failing host's orders fail; an
// unreadable status says so instead of reporting nothing.
func TestCertificates(t *testing.T) {
	dir := t.TempDir()
	c := NewCertificates("polls-dev", dir)
	notAfter := time.Date(2027, 2, 28, 12, 0, 0, 0, time.UTC)
	failing := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	if err := (acme.Store{Dir: dir}).SaveStatus(acme.Status{Hosts: []acme.HostStatus{
		{Host: "thor.polls.example.com", Tenant: "thor", State: "valid", NotAfter: notAfter},
		{Host: "polls.potter.example", Tenant: "potter", State: "failed", Error: "urn:ietf:params:acme:error:dns", FailingSince: failing},
	}}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP polls_certificate_expiry_timestamp_seconds When the certificate the router serves for a host expires (Unix time); absent while it has none.
# TYPE polls_certificate_expiry_timestamp_seconds gauge
polls_certificate_expiry_timestamp_seconds{host="thor.polls.example.com",stack="polls-dev",tenant="thor"} 1.803816e+09
# HELP polls_certificate_failing_since_timestamp_seconds Since when the orders of a host's certificate fail in a row (Unix time); absent while they do not. The CA's error: polls-agent acme status in the companion.
# TYPE polls_certificate_failing_since_timestamp_seconds gauge
polls_certificate_failing_since_timestamp_seconds{host="polls.potter.example",stack="polls-dev",tenant="potter"} 1.7960256e+09
# HELP polls_certificate_status_up 1 if the exporter could read the certificate companion's status.
# TYPE polls_certificate_status_up gauge
polls_certificate_status_up{stack="polls-dev"} 1
# HELP polls_certificate_valid 1 if the router serves a valid certificate for the host, 0 if none is issued yet or its orders fail.
# TYPE polls_certificate_valid gauge
polls_certificate_valid{host="polls.potter.example",stack="polls-dev",tenant="potter"} 0
polls_certificate_valid{host="thor.polls.example.com",stack="polls-dev",tenant="thor"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "status.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(NewCertificates("polls-dev", bad), strings.NewReader(`
# HELP polls_certificate_status_up 1 if the exporter could read the certificate companion's status.
# TYPE polls_certificate_status_up gauge
polls_certificate_status_up{stack="polls-dev"} 0
`)); err != nil {
		t.Error(err)
	}
}
