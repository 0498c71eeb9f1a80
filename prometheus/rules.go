package prometheus

import (
	"fmt"
	"strconv"
	"time"
)

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type rule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Thresholds of the alerts, each with the reason for its value.
const (
	// NotServingFor: a tenant's app with no healthy replica for this long
	// is down, not starting (an app becomes healthy within seconds, and a
	// release starts the new one beside the old).
	NotServingFor = 20 * time.Second
	// ServerErrorShare of the requests answered 5xx over a minute, with at
	// least ServerErrorsMin of them (one failed request is not an outage).
	ServerErrorShare = 0.5
	ServerErrorsMin  = 5
	// LatencyFactor: the tenant's 90th percentile over 5 minutes this many
	// times its median 90th percentile of the day before, and at least
	// LatencyFloor, for LatencyFor.
	LatencyFactor = 3
	LatencyFloor  = 0.25
	LatencyFor    = 10 * time.Minute
	// NearLimit: memory, disk or connections this close to the limit.
	NearLimit = 0.9
	// WALLate: the agent catches up every 10 s while it streams, and the
	// backups promise at most 60 s of lost changes.
	WALLate = 2 * time.Minute
	// BaseGrace is how late a base backup may be past its schedule (the
	// agent's own health check allows the same).
	BaseGrace = time.Hour
	// FirstBase is how long a new agent may take to its first base backup.
	FirstBase = 15 * time.Minute
	// FailingFor is how long a backup step may fail before it is reported.
	FailingFor = 5 * time.Minute
	// CertificateFailingFor is how long a host's certificate orders may
	// fail in a row before it is reported: the companion backs off and
	// retries, and a DNS record or port that is fixed within the hour
	// needs nobody.
	CertificateFailingFor = time.Hour
)

// StackWide is the tenant label of alerts about the whole stack: no tenant
// can be named so.
const StackWide = "*"

func ruleGroups(c Config) []ruleGroup {
	records := ruleGroup{Name: "polls.records", Rules: []rule{
		{Record: "tenant:polls_router_requests:rate5m",
			Expr: `sum by (stack, tenant) (rate(polls_router_requests_total{tenant!="_none"}[5m]))`},
		// Only where there were requests: an idle tenant has no latency,
		// and a NaN would spoil its day's median.
		{Record: "tenant:polls_router_request_duration_seconds:p90_5m",
			Expr: `histogram_quantile(0.9, sum by (stack, tenant, le) (rate(polls_router_request_duration_seconds_bucket{tenant!="_none"}[5m])))
  and on (stack, tenant) tenant:polls_router_requests:rate5m > 0`},
	}}
	alerts := ruleGroup{Name: "polls.alerts", Rules: []rule{
		{Alert: "TenantNotServing", For: duration(NotServingFor), Labels: severity("critical"),
			Expr: fmt.Sprintf(`sum by (stack, tenant) (polls_replicas_healthy{role="app"}) == 0
or
(
  sum by (stack, tenant) (rate(polls_router_requests_total{class="5xx", tenant!="_none"}[1m]))
    / sum by (stack, tenant) (rate(polls_router_requests_total{tenant!="_none"}[1m])) > %s
  and on (stack, tenant) sum by (stack, tenant) (increase(polls_router_requests_total{class="5xx", tenant!="_none"}[1m])) >= %d
)`, num(ServerErrorShare), ServerErrorsMin),
			Annotations: notes("Tenant {{ $labels.tenant }} of stack {{ $labels.stack }} is not serving",
				`No healthy app replica, or more than half of its requests answered 5xx by the router over the last minute (value: {{ printf "%.2f" $value }}).`)},
		{Alert: "TenantAppRestarting", Labels: severity("warning"),
			Expr:        `sum by (stack, tenant) (increase(polls_restarts_total{role="app"}[10m])) >= 3`,
			Annotations: notes("Tenant {{ $labels.tenant }}'s app of stack {{ $labels.stack }} keeps restarting", "{{ $value }} restarts in the last 10 minutes: see `docker logs` of its app.")},
		{Alert: "TenantLatencyHigh", For: duration(LatencyFor), Labels: severity("warning"),
			Expr: fmt.Sprintf(`tenant:polls_router_request_duration_seconds:p90_5m
  > %d * quantile_over_time(0.5, tenant:polls_router_request_duration_seconds:p90_5m[1d] offset 15m)
and tenant:polls_router_request_duration_seconds:p90_5m > %s`, LatencyFactor, num(LatencyFloor)),
			Annotations: notes("Tenant {{ $labels.tenant }} of stack {{ $labels.stack }} answers far slower than usual",
				fmt.Sprintf("90th percentile of the router's request time {{ $value | humanizeDuration }}, more than %d times its median of the day before.", LatencyFactor))},
		{Alert: "DatabaseDown", For: "1m", Labels: severity("critical"),
			Expr: `sum by (stack, tenant) (polls_replicas_healthy{role="db"}) == 0
or
max by (stack, tenant) (polls_database_up) == 0`,
			Annotations: notes("Tenant {{ $labels.tenant }}'s database of stack {{ $labels.stack }} is down", "Its container is not healthy, or its backup agent cannot connect to it.")},
		{Alert: "DatabaseMemoryNearLimit", For: "5m", Labels: severity("warning"),
			Expr:        fmt.Sprintf(`max by (stack, tenant) (polls_database_memory_working_set_bytes / polls_database_memory_limit_bytes) > %s`, num(NearLimit)),
			Annotations: notes("Tenant {{ $labels.tenant }}'s database of stack {{ $labels.stack }} is near its memory limit", "It uses {{ $value | humanizePercentage }} of its limit (polls:dbMemoryMb).")},
		{Alert: "DatabaseDiskNearFull", For: "5m", Labels: severity("warning"),
			Expr:        fmt.Sprintf(`max by (stack, tenant) (1 - polls_database_filesystem_free_bytes / polls_database_filesystem_size_bytes) > %s`, num(NearLimit)),
			Annotations: notes("Tenant {{ $labels.tenant }}'s database of stack {{ $labels.stack }} is near a full disk", "The filesystem of its data is {{ $value | humanizePercentage }} full.")},
		{Alert: "DatabaseConnectionsNearLimit", For: "5m", Labels: severity("warning"),
			Expr:        fmt.Sprintf(`max by (stack, tenant) (polls_database_connections / polls_database_max_connections) > %s`, num(NearLimit)),
			Annotations: notes("Tenant {{ $labels.tenant }}'s database of stack {{ $labels.stack }} is near its connection limit", "{{ $value | humanizePercentage }} of max_connections in use.")},
		{Alert: "MonitoringExporterDown", For: "1m", Labels: map[string]string{"severity": "critical", "tenant": StackWide},
			Expr:        fmt.Sprintf(`up{job=%q} == 0 or polls_engine_up == 0`, JobMetrics),
			Annotations: notes("The metrics exporter of stack {{ $labels.stack }} is down or cannot read the Docker engine", "Every tenant's request and health metrics are missing: see `docker logs` of the stack's metrics container.")},
	}}
	if c.Backups != nil {
		alerts.Rules = append(alerts.Rules,
			rule{Alert: "BackupAgentDown", For: "2m", Labels: severity("critical"),
				Expr:        fmt.Sprintf(`up{job=%q} == 0`, JobBackup),
				Annotations: notes("Tenant {{ $labels.tenant }}'s backup agent of stack {{ $labels.stack }} does not answer", "Its backups, and its database's metrics, are not known.")},
			rule{Alert: "BaseBackupLate", For: "1m", Labels: severity("critical"),
				Expr: fmt.Sprintf(`time() - max by (stack, tenant) (polls_backup_last_base_timestamp_seconds) > %d
or
(time() - max by (stack, tenant) (polls_backup_agent_start_timestamp_seconds) > %d
  unless on (stack, tenant) polls_backup_last_base_timestamp_seconds)`, seconds(c.Backups.Interval+BaseGrace), seconds(FirstBase)),
				Annotations: notes("Tenant {{ $labels.tenant }}'s base backup of stack {{ $labels.stack }} is late",
					fmt.Sprintf("The last base backup is {{ $value | humanizeDuration }} old (or there is none yet); one is due every %s (polls:backupSchedule).", duration(c.Backups.Interval)))},
			rule{Alert: "WALArchiveLate", For: "1m", Labels: severity("critical"),
				Expr: fmt.Sprintf(`time() - max by (stack, tenant) (polls_backup_wal_caught_up_timestamp_seconds) > %d
or
(time() - max by (stack, tenant) (polls_backup_agent_start_timestamp_seconds) > %d
  unless on (stack, tenant) polls_backup_wal_caught_up_timestamp_seconds)`, seconds(WALLate), seconds(5*time.Minute)),
				Annotations: notes("Tenant {{ $labels.tenant }}'s write-ahead log of stack {{ $labels.stack }} is not being archived",
					"All of its changes were last archived {{ $value | humanizeDuration }} ago: a restore would lose what came since.")},
			rule{Alert: "BackupStepFailing", Labels: severity("warning"),
				Expr:        fmt.Sprintf(`time() - max by (stack, tenant, step) (polls_backup_failing_since_timestamp_seconds) > %d`, seconds(FailingFor)),
				Annotations: notes("Tenant {{ $labels.tenant }}'s backups of stack {{ $labels.stack }}: {{ $labels.step }} is failing", "Failing for {{ $value | humanizeDuration }}: see `docker exec {{ $labels.stack }}-{{ $labels.tenant }}-backup polls-agent backup status`.")},
		)
	}
	if c.Certificates != nil {
		// A certificate is renewed from RenewBefore ahead of its expiry:
		// with half of that left, renewals have failed for as long, and
		// there is still time to act.
		left := c.Certificates.RenewBefore / 2
		alerts.Rules = append(alerts.Rules,
			rule{Alert: "CertificateExpiresSoon", Labels: severity("critical"),
				Expr: fmt.Sprintf(`min by (stack, tenant, host) (polls_certificate_expiry_timestamp_seconds) - time() < %d`, seconds(left)),
				Annotations: notes("The certificate of {{ $labels.host }} (tenant {{ $labels.tenant }}, stack {{ $labels.stack }}) expires soon",
					fmt.Sprintf("It expires in {{ $value | humanizeDuration }} and is renewed from %s before its expiry (polls:acmeRenewBefore): its renewals fail. The CA's error: `docker exec {{ $labels.stack }}-acme polls-agent acme status`.", days(c.Certificates.RenewBefore)))},
			rule{Alert: "CertificateOrdersFailing", Labels: severity("warning"),
				Expr: fmt.Sprintf(`time() - max by (stack, tenant, host) (polls_certificate_failing_since_timestamp_seconds) > %d`, seconds(CertificateFailingFor)),
				Annotations: notes("Certificate orders for {{ $labels.host }} (tenant {{ $labels.tenant }}, stack {{ $labels.stack }}) fail",
					"They have failed for {{ $value | humanizeDuration }}; the host is served over HTTP (or with its current certificate) meanwhile. The CA's error: `docker exec {{ $labels.stack }}-acme polls-agent acme status`.")},
			rule{Alert: "CertificateStatusUnreadable", For: "10m", Labels: map[string]string{"severity": "warning", "tenant": StackWide},
				Expr: `polls_certificate_status_up == 0`,
				Annotations: notes("The certificates of stack {{ $labels.stack }} are not watched",
					"The metrics exporter cannot read the certificate companion's status.json: see `docker logs {{ $labels.stack }}-acme`.")},
		)
	}
	return []ruleGroup{records, alerts}
}

func severity(s string) map[string]string { return map[string]string{"severity": s} }

func notes(summary, description string) map[string]string {
	return map[string]string{"summary": summary, "description": description}
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func seconds(d time.Duration) int { return int(d / time.Second) }

// days writes d in days when it is whole days ("30 days"), else as Go does.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	}
	return d.String()
}
