package prometheus

// promConfig is prometheus.yml, as much of it as the stack sets.
type promConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		ScrapeTimeout      string `yaml:"scrape_timeout"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	RuleFiles []string `yaml:"rule_files"`
	Alerting  struct {
		Alertmanagers []staticTargets `yaml:"alertmanagers"`
	} `yaml:"alerting"`
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
}

type staticTargets struct {
	StaticConfigs []TargetGroup `yaml:"static_configs"`
}

type scrapeConfig struct {
	JobName        string `yaml:"job_name"`
	ScrapeInterval string `yaml:"scrape_interval,omitempty"`
	ScrapeTimeout  string `yaml:"scrape_timeout,omitempty"`
	MetricsPath    string `yaml:"metrics_path,omitempty"`
	// HonorLabels keeps the stack and tenant labels the exporters set on
	// their own series (they equal the target's).
	HonorLabels   bool          `yaml:"honor_labels"`
	StaticConfigs []TargetGroup `yaml:"static_configs,omitempty"`
	FileSDConfigs []fileSD      `yaml:"file_sd_configs,omitempty"`
}

type fileSD struct {
	Files []string `yaml:"files"`
	// RefreshInterval backs up the file watch Prometheus keeps on them.
	RefreshInterval string `yaml:"refresh_interval"`
}

func prometheusConfig(c Config) promConfig {
	var p promConfig
	p.Global.ScrapeInterval = duration(BackupInterval)
	p.Global.ScrapeTimeout = "10s"
	p.Global.EvaluationInterval = duration(EvalInterval)
	p.RuleFiles = []string{c.RulesFile}
	p.Alerting.Alertmanagers = []staticTargets{{StaticConfigs: []TargetGroup{{Targets: []string{c.Alertmanager}}}}}
	p.ScrapeConfigs = []scrapeConfig{{
		JobName: JobMetrics, ScrapeInterval: duration(MetricsInterval), ScrapeTimeout: "4s", HonorLabels: true,
		StaticConfigs: MetricsGroups(c),
	}}
	if c.Backups != nil {
		p.ScrapeConfigs = append(p.ScrapeConfigs, scrapeConfig{
			JobName: JobBackup, HonorLabels: true,
			FileSDConfigs: []fileSD{{Files: []string{c.TargetsDir + "/" + TargetsFile}, RefreshInterval: "30s"}},
		})
	}
	return p
}

// amConfig is alertmanager.yml.
type amConfig struct {
	Route struct {
		Receiver       string   `yaml:"receiver"`
		GroupBy        []string `yaml:"group_by"`
		GroupWait      string   `yaml:"group_wait"`
		GroupInterval  string   `yaml:"group_interval"`
		RepeatInterval string   `yaml:"repeat_interval"`
	} `yaml:"route"`
	Receivers []receiver `yaml:"receivers"`
}

type receiver struct {
	Name     string    `yaml:"name"`
	Webhooks []webhook `yaml:"webhook_configs,omitempty"`
}

type webhook struct {
	URL          string      `yaml:"url"`
	SendResolved bool        `yaml:"send_resolved"`
	HTTPConfig   *httpConfig `yaml:"http_config,omitempty"`
}

type httpConfig struct {
	Authorization struct {
		Type            string `yaml:"type"`
		CredentialsFile string `yaml:"credentials_file"`
	} `yaml:"authorization"`
}

// Receivers: every alert goes to the webhook, or, without one, nowhere
// beyond the UIs.
const (
	receiverWebhook = "webhook"
	receiverNone    = "none"
)

func alertmanagerConfig(c Config) amConfig {
	var a amConfig
	// One notification per alert, stack and tenant: a tenant's trouble is
	// never folded into another tenant's message.
	a.Route.GroupBy = []string{"alertname", "stack", "tenant"}
	a.Route.GroupWait = duration(GroupWait)
	a.Route.GroupInterval = "1m"
	a.Route.RepeatInterval = "4h"
	if c.Webhook == nil {
		a.Route.Receiver = receiverNone
		a.Receivers = []receiver{{Name: receiverNone}}
		return a
	}
	a.Route.Receiver = receiverWebhook
	w := webhook{URL: c.Webhook.URL, SendResolved: true}
	if c.Webhook.TokenFile != "" {
		w.HTTPConfig = &httpConfig{}
		w.HTTPConfig.Authorization.Type = "Bearer"
		w.HTTPConfig.Authorization.CredentialsFile = c.Webhook.TokenFile
	}
	a.Receivers = []receiver{{Name: receiverWebhook, Webhooks: []webhook{w}}}
	return a
}
