// Package prometheus renders the configuration of the stack's Prometheus
// and Alertmanager from the stack config: what to scrape, the alert rules,
// where alerts go, and the list of backup agents to scrape (file-based
// service discovery), which is the only part that changes with the tenants.
//
// Prometheus re-reads that list by itself when it changes, so adding or
// removing a tenant rewrites one file and restarts nothing. Every rule
// keeps the stack and tenant labels the exporters put on each series, so
// every alert names both.
//
// The package is pure: it imports no Pulumi, and renders byte-identical
// files for the same input. Every file is built as data and encoded by a
// YAML or JSON encoder, so no value can inject configuration.
package prometheus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is what the stack's monitoring is rendered from.
type Config struct {
	// Stack is the stack's Docker object prefix, e.g. "polls-dev": the
	// stack label of every series.
	Stack string
	// Tenants are the tenants' names, in any order.
	Tenants []string
	// Metrics is host:port of the metrics exporter (the router's requests
	// and the engine's view of every tenant).
	Metrics string
	// Alertmanager is host:port of the Alertmanager.
	Alertmanager string
	// RulesFile and TargetsDir are where Prometheus finds the rules and
	// the backup agents' target list.
	RulesFile  string
	TargetsDir string
	// Backups, when set, adds the backup agents' metrics and the rules
	// on backup freshness; nil when the stack has no backups.
	Backups *Backups
	// Certificates, when set, adds the rules on the router's certificates
	// (ACME); nil without ACME.
	Certificates *Certificates
	// Webhook, when set, receives every alert; nil keeps them in
	// Prometheus' and Alertmanager's UIs only.
	Webhook *Webhook
}

// Backups is what the backup rules and targets need.
type Backups struct {
	// Agent returns host:port of a tenant's backup agent.
	Agent func(tenant string) string
	// Interval is how often each tenant takes a base backup.
	Interval time.Duration
}

// Certificates is what the certificate rules need.
type Certificates struct {
	// RenewBefore is how long before expiry the companion renews a
	// certificate (polls:acmeRenewBefore).
	RenewBefore time.Duration
}

// Webhook is Alertmanager's receiver.
type Webhook struct {
	URL string
	// TokenFile, if set, holds the Bearer token Alertmanager sends.
	TokenFile string
}

// Files are the rendered files.
type Files struct {
	// Prometheus is prometheus.yml, Rules the rule file it loads,
	// Alertmanager alertmanager.yml.
	Prometheus   []byte
	Rules        []byte
	Alertmanager []byte
}

// TargetsFile is the name of the backup agents' list in TargetsDir.
const TargetsFile = "backup.json"

// Job names: the `job` label of every series scraped.
const (
	JobMetrics = "polls-metrics"
	JobBackup  = "polls-backup"
)

// Scrape and evaluation intervals. The exporter is scraped and the rules
// evaluated every 5 s, so that a tenant that stops serving is reported
// within the bound README states (scrape + evaluation + the rule's `for` +
// Alertmanager's group wait); the backup agents every 30 s, as each scrape
// queries the tenant's database.
const (
	MetricsInterval = 5 * time.Second
	BackupInterval  = 30 * time.Second
	EvalInterval    = 5 * time.Second
	GroupWait       = 5 * time.Second
)

var (
	nameToken = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	hostPort  = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?:[0-9]{1,5}$`)
	pathToken = regexp.MustCompile(`^/[A-Za-z0-9._/-]+$`)
	stackName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
)

// Render returns Prometheus' and Alertmanager's configuration.
func Render(c Config) (Files, error) {
	if err := check(c); err != nil {
		return Files{}, fmt.Errorf("render monitoring config: %w", err)
	}
	prom, err := encodeYAML(prometheusConfig(c))
	if err != nil {
		return Files{}, err
	}
	rules, err := encodeYAML(ruleFile{Groups: ruleGroups(c)})
	if err != nil {
		return Files{}, err
	}
	am, err := encodeYAML(alertmanagerConfig(c))
	if err != nil {
		return Files{}, err
	}
	return Files{Prometheus: prom, Rules: rules, Alertmanager: am}, nil
}

// TargetGroup is one entry of a file-based service discovery list.
type TargetGroup struct {
	Targets []string          `json:"targets" yaml:"targets"`
	Labels  map[string]string `json:"labels" yaml:"labels,omitempty"`
}

// Targets returns the backup agents' target list (TargetsFile), one
// group per tenant, sorted by tenant, each labelled with its stack and
// tenant: an agent that does not answer is `up == 0` with its tenant's
// name, not a series that vanished.
func Targets(c Config) ([]byte, error) {
	if err := check(c); err != nil {
		return nil, fmt.Errorf("render monitoring targets: %w", err)
	}
	return encodeJSON(AgentGroups(c))
}

// AgentGroups are the backup agents' target groups; none without backups.
func AgentGroups(c Config) []TargetGroup {
	groups := []TargetGroup{}
	if c.Backups == nil {
		return groups
	}
	for _, t := range sorted(c.Tenants) {
		groups = append(groups, TargetGroup{Targets: []string{c.Backups.Agent(t)}, Labels: map[string]string{"stack": c.Stack, "tenant": t}})
	}
	return groups
}

// MetricsGroups is the metrics exporter's target group.
func MetricsGroups(c Config) []TargetGroup {
	return []TargetGroup{{Targets: []string{c.Metrics}, Labels: map[string]string{"stack": c.Stack}}}
}

func check(c Config) error {
	if !stackName.MatchString(c.Stack) {
		return fmt.Errorf("stack %q is not a Docker object prefix", c.Stack)
	}
	for _, t := range c.Tenants {
		if !nameToken.MatchString(t) {
			return fmt.Errorf("tenant %q is not a lower-case DNS label", t)
		}
		if c.Backups != nil && !hostPort.MatchString(c.Backups.Agent(t)) {
			return fmt.Errorf("tenant %s: backup agent %q is not host:port", t, c.Backups.Agent(t))
		}
	}
	if !hostPort.MatchString(c.Metrics) || !hostPort.MatchString(c.Alertmanager) {
		return fmt.Errorf("metrics exporter %q and alertmanager %q must be host:port", c.Metrics, c.Alertmanager)
	}
	if !pathToken.MatchString(c.RulesFile) || !pathToken.MatchString(c.TargetsDir) {
		return fmt.Errorf("rules file %q and targets directory %q must be absolute paths", c.RulesFile, c.TargetsDir)
	}
	if c.Backups != nil && c.Backups.Interval <= 0 {
		return fmt.Errorf("backup interval %s is not positive", c.Backups.Interval)
	}
	if c.Certificates != nil && c.Certificates.RenewBefore <= 0 {
		return fmt.Errorf("certificate renewal lead %s is not positive", c.Certificates.RenewBefore)
	}
	if w := c.Webhook; w != nil && (w.URL == "" || (w.TokenFile != "" && !pathToken.MatchString(w.TokenFile))) {
		return fmt.Errorf("webhook %q with token file %q: the URL is required, the file an absolute path", w.URL, w.TokenFile)
	}
	return nil
}

// header starts every rendered YAML file.
const header = "# Rendered by the polls Pulumi program from the stack config: edit the stack\n# config (polls:monitoring and its keys, polls:tenants), not this file.\n"

func encodeYAML(v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("render monitoring config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render monitoring config: %w", err)
	}
	return buf.Bytes(), nil
}

func encodeJSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render monitoring targets: %w", err)
	}
	return append(b, '\n'), nil
}

func sorted(list []string) []string {
	out := append([]string(nil), list...)
	slices.Sort(out)
	return out
}

// duration writes d as Prometheus does: 5s, 1m, 25h.
func duration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	case d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	default:
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
}
