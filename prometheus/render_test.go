package prometheus

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// agent names a tenant's backup agent as the stack does.
func agent(t string) string { return "polls-dev-" + t + "-backup:7070" }

// configs are the cases every test renders.
var configs = []struct {
	name string
	c    Config
}{
	{"minimal", Config{
		Stack: "polls-dev", Tenants: []string{"thor", "potter"}, Metrics: "metrics:9100", Alertmanager: "alertmanager:9093",
		RulesFile: "/etc/prometheus/rules.yml", TargetsDir: "/etc/prometheus/targets",
	}},
	{"backups-webhook", Config{
		Stack: "polls-prod", Tenants: []string{"thor", "potter", "hermione"}, Metrics: "metrics:9100", Alertmanager: "alertmanager:9093",
		RulesFile: "/etc/prometheus/rules.yml", TargetsDir: "/etc/prometheus/targets",
		Backups:      &Backups{Agent: func(t string) string { return "polls-prod-" + t + "-backup:7070" }, Interval: 24 * time.Hour},
		Certificates: &Certificates{RenewBefore: 30 * 24 * time.Hour},
		Webhook:      &Webhook{URL: "https://alerts.example.com/hook", TokenFile: "/run/secrets/alert-webhook-token"},
	}},
	{"hourly-webhook-no-token", Config{
		Stack: "polls-dev", Tenants: nil, Metrics: "metrics:9100", Alertmanager: "alertmanager:9093",
		RulesFile: "/etc/prometheus/rules.yml", TargetsDir: "/etc/prometheus/targets",
		Backups: &Backups{Agent: agent, Interval: time.Hour},
		Webhook: &Webhook{URL: "http://172.17.0.1:5001/alerts"},
	}},
}

// TestGolden ensures each case renders exactly its files in testdata/
// (refresh with go test ./prometheus -update, and review the diff).
func TestGolden(t *testing.T) {
	for _, tt := range configs {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Render(tt.c)
			if err != nil {
				t.Fatal(err)
			}
			targets, err := Targets(tt.c)
			if err != nil {
				t.Fatal(err)
			}
			for suffix, got := range map[string][]byte{
				"prometheus.yml": f.Prometheus, "rules.yml": f.Rules, "alertmanager.yml": f.Alertmanager, "targets.json": targets,
			} {
				checkGolden(t, filepath.Join("testdata", tt.name+"."+suffix), got)
			}
		})
	}
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./prometheus -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendered file; got:\n%s", path, got)
	}
}

// TestRenderDeterministic ensures the same config renders byte-identical
// files whatever the order of its tenants.
func TestRenderDeterministic(t *testing.T) {
	c := configs[1].c
	a, _ := Targets(c)
	c.Tenants = []string{"hermione", "thor", "potter"}
	b, _ := Targets(c)
	if !bytes.Equal(a, b) {
		t.Errorf("targets depend on the tenants' order:\n%s\n%s", a, b)
	}
}

// TestRenderRefusesBadValues ensures a value that is not what it claims is
// refused, whatever validated it before.
func TestRenderRefusesBadValues(t *testing.T) {
	for name, f := range map[string]func(*Config){
		"tenant":      func(c *Config) { c.Tenants = []string{"thor\n- job_name: evil"} },
		"stack":       func(c *Config) { c.Stack = "polls dev" },
		"metrics":     func(c *Config) { c.Metrics = "metrics" },
		"rules file":  func(c *Config) { c.RulesFile = "rules.yml" },
		"token file":  func(c *Config) { c.Webhook = &Webhook{URL: "https://a.example/", TokenFile: "token"} },
		"no interval": func(c *Config) { c.Backups = &Backups{Agent: agent} },
		"no renewal":  func(c *Config) { c.Certificates = &Certificates{} },
		"agent": func(c *Config) {
			c.Backups = &Backups{Agent: func(string) string { return "a b:1" }, Interval: time.Hour}
		},
		"empty hook":   func(c *Config) { c.Webhook = &Webhook{} },
		"alertmanager": func(c *Config) { c.Alertmanager = "http://alertmanager:9093" },
	} {
		c := configs[1].c
		f(&c)
		if _, err := Render(c); err == nil {
			t.Errorf("%s: Render accepted %+v", name, c)
		}
	}
}

// TestRulesName ensures every alert carries the stack and tenant labels:
// each expression keeps both (by (stack, tenant ...), or a target's
// labels, or a series recorded by them), or the rule sets the tenant itself
// for stack-wide alerts.
func TestRulesName(t *testing.T) {
	for _, g := range ruleGroups(configs[1].c) {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if r.Labels["tenant"] == "" && !strings.Contains(r.Expr, "by (stack, tenant") && !strings.Contains(r.Expr, `up{job="polls-backup"}`) && !strings.HasPrefix(r.Expr, "tenant:") {
				t.Errorf("alert %s: expression may lose the stack or tenant label:\n%s", r.Alert, r.Expr)
			}
			if !strings.Contains(r.Annotations["summary"], "{{ $labels.stack }}") {
				t.Errorf("alert %s: summary does not name the stack: %q", r.Alert, r.Annotations["summary"])
			}
		}
	}
}

// TestPromtool ensures the real Prometheus and Alertmanager accept the
// rendered files: `promtool check config` (which also checks the rules it
// loads), `promtool check rules` and `amtool check-config`.
func TestPromtool(t *testing.T) {
	promtool, amtool := tool(t, "promtool", "prometheus"), tool(t, "amtool", "prometheus-alertmanager")
	for _, tt := range configs {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := tt.c
			c.RulesFile, c.TargetsDir = filepath.Join(dir, "rules.yml"), filepath.Join(dir, "targets")
			if c.Webhook != nil && c.Webhook.TokenFile != "" {
				w := *c.Webhook
				w.TokenFile = filepath.Join(dir, "token")
				c.Webhook = &w
				write(t, w.TokenFile, []byte("token\n"))
			}
			f, err := Render(c)
			if err != nil {
				t.Fatal(err)
			}
			targets, _ := Targets(c)
			write(t, filepath.Join(dir, "prometheus.yml"), f.Prometheus)
			write(t, c.RulesFile, f.Rules)
			write(t, filepath.Join(dir, "alertmanager.yml"), f.Alertmanager)
			write(t, filepath.Join(c.TargetsDir, TargetsFile), targets)
			run(t, promtool, "check", "config", filepath.Join(dir, "prometheus.yml"))
			run(t, promtool, "check", "rules", c.RulesFile)
			run(t, amtool, "check-config", filepath.Join(dir, "alertmanager.yml"))
		})
	}
}

// tool returns the path of a Prometheus tool, or skips naming its package.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found on PATH: apt-get install %s", name, pkg)
	}
	return p
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, bin string, args ...string) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
}

// ruleTests are Prometheus' own unit tests of the alert rules (`promtool
// test rules`), on series as the exporters write them: each alert fires
// when and only when it should, naming its stack and tenant. Time starts
// at 0, so a timestamp of -90000 is 25 hours old at once.
const ruleTests = `rule_files: [rules.yml]
evaluation_interval: 5s
tests:
  - name: an app with no healthy replica for 20 s; the other tenant serves
    interval: 5s
    input_series:
      - series: 'polls_replicas_healthy{stack="polls-prod",tenant="thor",role="app",job="polls-metrics",instance="metrics:9100"}'
        values: '1 1 0x20'
      - series: 'polls_replicas_healthy{stack="polls-prod",tenant="potter",role="app",job="polls-metrics",instance="metrics:9100"}'
        values: '2x22'
    alert_rule_test:
      - {eval_time: 25s, alertname: TenantNotServing, exp_alerts: []}
      - eval_time: 30s
        alertname: TenantNotServing
        exp_alerts:
          - exp_labels: {severity: critical, stack: polls-prod, tenant: thor}
            exp_annotations:
              summary: Tenant thor of stack polls-prod is not serving
              description: 'No healthy app replica, or more than half of its requests answered 5xx by the router over the last minute (value: 0.00).'
  - name: the router answers most of a tenant's requests 502; a few 5xx of another's are no outage
    interval: 5s
    input_series:
      - series: 'polls_router_requests_total{stack="polls-prod",tenant="thor",class="5xx"}'
        values: '0+3x30'
      - series: 'polls_router_requests_total{stack="polls-prod",tenant="thor",class="2xx"}'
        values: '0+1x30'
      - series: 'polls_router_requests_total{stack="polls-prod",tenant="potter",class="5xx"}'
        values: '0 1 1 1x30'
      - series: 'polls_router_requests_total{stack="polls-prod",tenant="potter",class="2xx"}'
        values: '0x30'
    alert_rule_test:
      - eval_time: 90s
        alertname: TenantNotServing
        exp_alerts:
          - exp_labels: {severity: critical, stack: polls-prod, tenant: thor}
            exp_annotations:
              summary: Tenant thor of stack polls-prod is not serving
              description: 'No healthy app replica, or more than half of its requests answered 5xx by the router over the last minute (value: 0.75).'
  - name: a late base backup and stale log archiving name their tenant
    interval: 1m
    input_series:
      - series: 'polls_backup_last_base_timestamp_seconds{stack="polls-prod",tenant="thor"}'
        values: '-90000x5'
      - series: 'polls_backup_last_base_timestamp_seconds{stack="polls-prod",tenant="potter"}'
        values: '0x5'
      - series: 'polls_backup_wal_caught_up_timestamp_seconds{stack="polls-prod",tenant="potter"}'
        values: '0x5'
      - series: 'polls_backup_wal_caught_up_timestamp_seconds{stack="polls-prod",tenant="thor"}'
        values: '0 60 120 180 240 300'
    alert_rule_test:
      - eval_time: 2m
        alertname: BaseBackupLate
        exp_alerts:
          - exp_labels: {severity: critical, stack: polls-prod, tenant: thor}
            exp_annotations:
              summary: Tenant thor's base backup of stack polls-prod is late
              description: The last base backup is 1d 1h 2m 0s old (or there is none yet); one is due every 24h (polls:backupSchedule).
      - eval_time: 4m
        alertname: WALArchiveLate
        exp_alerts:
          - exp_labels: {severity: critical, stack: polls-prod, tenant: potter}
            exp_annotations:
              summary: Tenant potter's write-ahead log of stack polls-prod is not being archived
              description: 'All of its changes were last archived 4m 0s ago: a restore would lose what came since.'
  - name: a database near its memory limit and a full disk
    interval: 1m
    input_series:
      - series: 'polls_database_memory_working_set_bytes{stack="polls-prod",tenant="thor"}'
        values: '950x10'
      - series: 'polls_database_memory_limit_bytes{stack="polls-prod",tenant="thor"}'
        values: '1000x10'
      - series: 'polls_database_filesystem_free_bytes{stack="polls-prod",tenant="potter"}'
        values: '50x10'
      - series: 'polls_database_filesystem_size_bytes{stack="polls-prod",tenant="potter"}'
        values: '1000x10'
    alert_rule_test:
      - eval_time: 6m
        alertname: DatabaseMemoryNearLimit
        exp_alerts:
          - exp_labels: {severity: warning, stack: polls-prod, tenant: thor}
            exp_annotations:
              summary: Tenant thor's database of stack polls-prod is near its memory limit
              description: It uses 95% of its limit (polls:dbMemoryMb).
      - eval_time: 6m
        alertname: DatabaseDiskNearFull
        exp_alerts:
          - exp_labels: {severity: warning, stack: polls-prod, tenant: potter}
            exp_annotations:
              summary: Tenant potter's database of stack polls-prod is near a full disk
              description: The filesystem of its data is 95% full.
  - name: a certificate whose renewals failed for half the renewal window; one renewed in time; orders failing for an hour
    interval: 1h
    input_series:
      - series: 'polls_certificate_expiry_timestamp_seconds{stack="polls-prod",tenant="thor",host="thor.polls.example.com"}'
        values: '1296000x3'
      - series: 'polls_certificate_expiry_timestamp_seconds{stack="polls-prod",tenant="potter",host="potter.polls.example.com"}'
        values: '1296000 1296000 7776000 7776000'
      - series: 'polls_certificate_failing_since_timestamp_seconds{stack="polls-prod",tenant="potter",host="polls.potter.example"}'
        values: '0x3'
    alert_rule_test:
      - {eval_time: 0h, alertname: CertificateExpiresSoon, exp_alerts: []}
      - eval_time: 2h
        alertname: CertificateExpiresSoon
        exp_alerts:
          - exp_labels: {severity: critical, stack: polls-prod, tenant: thor, host: thor.polls.example.com}
            exp_annotations:
              summary: The certificate of thor.polls.example.com (tenant thor, stack polls-prod) expires soon
              description: 'It expires in 14d 22h 0m 0s and is renewed from 30 days before its expiry (polls:acmeRenewBefore): its renewals fail. The CA''s error: ` + "`docker exec polls-prod-acme polls-agent acme status`" + `.'
      - {eval_time: 1h, alertname: CertificateOrdersFailing, exp_alerts: []}
      - eval_time: 2h
        alertname: CertificateOrdersFailing
        exp_alerts:
          - exp_labels: {severity: warning, stack: polls-prod, tenant: potter, host: polls.potter.example}
            exp_annotations:
              summary: Certificate orders for polls.potter.example (tenant potter, stack polls-prod) fail
              description: 'They have failed for 2h 0m 0s; the host is served over HTTP (or with its current certificate) meanwhile. The CA''s error: ` + "`docker exec polls-prod-acme polls-agent acme status`" + `.'
`

// TestAlertRules runs ruleTests against the rendered rules with `promtool
// test rules`.
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus")
	dir := t.TempDir()
	f, err := Render(configs[1].c)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "rules.yml"), f.Rules)
	write(t, filepath.Join(dir, "tests.yml"), []byte(ruleTests))
	run(t, promtool, "test", "rules", filepath.Join(dir, "tests.yml"))
}
