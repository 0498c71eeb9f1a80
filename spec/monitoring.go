package spec

import (
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Monitoring defaults. Pulumi.yaml documents the same values.
const (
	DefaultMonitoring     = "false"
	DefaultMonitoringPort = 9090
	// The official images, pinned: the rendered configuration uses only
	// what Prometheus 2.42 and Alertmanager 0.25 (Debian 12's) accept too.
	DefaultPrometheusImage   = "prom/prometheus:v2.53.4"
	DefaultAlertmanagerImage = "prom/alertmanager:v0.28.1"
)

// The values of polls:monitoring besides true and false.
const (
	// MonitoringExporters runs the exporters only, for an operator's own
	// Prometheus to scrape.
	MonitoringExporters = "exporters"
)

// Monitoring is the stack's metrics and alerts; nil when polls:monitoring
// is false.
type Monitoring struct {
	// Prometheus says the stack runs its own Prometheus and Alertmanager
	// (polls:monitoring true); false runs the exporters only.
	Prometheus bool
	// Port is Prometheus' UI on the Docker host's loopback.
	Port int
	// PrometheusImage and AlertmanagerImage are image references.
	PrometheusImage   string
	AlertmanagerImage string
	// Webhook receives the alerts; nil for none (they show in Prometheus'
	// UI only).
	Webhook *Webhook
}

// Webhook is where Alertmanager sends alerts.
type Webhook struct {
	// URL is the receiver's http(s) URL, with no credentials in it.
	URL string
	// Token, if set, is sent as "Authorization: Bearer <token>". Secret.
	Token string
}

// monitoringKeys are the keys that belong to monitoring, besides
// polls:monitoring itself.
var monitoringKeys = []string{"monitoringPort", "prometheusImage", "alertmanagerImage", "alertWebhookUrl", "alertWebhookToken"}

// monitoring reads polls:monitoring and the keys that go with it; s gives
// the router's ports, which Prometheus' UI must not take.
func (p *parser) monitoring(s Stack) *Monitoring {
	mode := strings.TrimSpace(p.str("monitoring", DefaultMonitoring))
	on, err := strconv.ParseBool(mode)
	switch {
	case mode == MonitoringExporters:
	case err != nil:
		p.addf("polls:monitoring: %q is not accepted: use true (exporters, Prometheus and Alertmanager), exporters (the exporters only, for your own Prometheus) or false (the default), e.g. `pulumi config set polls:monitoring true`", mode)
		return nil
	case !on:
		for _, k := range monitoringKeys {
			if p.setOtherThanDefault(k) {
				p.addf("polls:%s: set while polls:monitoring is false: remove it with `pulumi config rm polls:%s`, or turn monitoring on with `pulumi config set polls:monitoring true`", k, k)
			}
		}
		return nil
	}
	m := &Monitoring{
		Prometheus:        mode != MonitoringExporters,
		Port:              p.port("monitoringPort", DefaultMonitoringPort),
		PrometheusImage:   p.image("prometheusImage", DefaultPrometheusImage),
		AlertmanagerImage: p.image("alertmanagerImage", DefaultAlertmanagerImage),
	}
	if !m.Prometheus {
		for _, k := range monitoringKeys {
			if p.setOtherThanDefault(k) {
				p.addf("polls:%s: used only with polls:monitoring true (with exporters, the stack runs no Prometheus or Alertmanager): remove it with `pulumi config rm polls:%s`, or `pulumi config set polls:monitoring true`", k, k)
			}
		}
		return m
	}
	for _, other := range []struct {
		key  string
		port int
	}{{"httpPort", s.HTTPPort}, {"httpsPort", s.HTTPSPort}} {
		if m.Port == other.port {
			p.addf("polls:monitoringPort: %d is also polls:%s: give Prometheus' UI a port of its own, e.g. `pulumi config set polls:monitoringPort %d`", m.Port, other.key, freePortHint(s))
		}
	}
	m.Webhook = p.webhook()
	return m
}

// freePortHint is a port to suggest for Prometheus' UI that the router does
// not use.
func freePortHint(s Stack) int {
	for port := DefaultMonitoringPort; ; port++ {
		if port != s.HTTPPort && port != s.HTTPSPort {
			return port
		}
	}
}

// setOtherThanDefault says key is set to something other than its default
// (Pulumi passes Pulumi.yaml's defaults as values).
func (p *parser) setOtherThanDefault(key string) bool {
	v, ok := p.values[key]
	return ok && strings.TrimSpace(v) != "" && strings.TrimSpace(v) != p.defaultOf(key)
}

// webhook reads polls:alertWebhookUrl and polls:alertWebhookToken. The URL
// is stack config in plain text, so it may hold no credential: those go in
// the token, a secret.
func (p *parser) webhook() *Webhook {
	raw := strings.TrimSpace(p.values["alertWebhookUrl"])
	token := p.values["alertWebhookToken"]
	if raw == "" {
		if strings.TrimSpace(token) != "" {
			p.addf("polls:alertWebhookToken: set without polls:alertWebhookUrl: set the receiver's URL, e.g. `pulumi config set polls:alertWebhookUrl https://alerts.example.com/hook`, or remove the token")
		}
		return nil
	}
	const fix = "use the receiver's http(s) URL, e.g. https://alerts.example.com/hook"
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" || len(raw) > 2000 {
		p.addf("polls:alertWebhookUrl: %q is not a webhook URL: %s", raw, fix)
		return nil
	}
	ok := true
	if u.User != nil {
		// Never echo it: it may hold a password.
		p.addf("polls:alertWebhookUrl: has a user or password in it, which would be stored in plain text: put the secret in polls:alertWebhookToken (`pulumi config set --secret polls:alertWebhookToken -- \"$TOKEN\"`, sent as a Bearer token) and drop it from the URL")
		ok = false
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.Contains(raw, "?") {
		p.addf("polls:alertWebhookUrl: has a query or fragment, which would be stored in plain text: put a secret in polls:alertWebhookToken (`pulumi config set --secret polls:alertWebhookToken -- \"$TOKEN\"`, sent as a Bearer token) and drop the query from the URL")
		ok = false
	}
	if host := u.Hostname(); host == "localhost" || strings.HasSuffix(host, ".localhost") || isLoopback(host) {
		p.addf("polls:alertWebhookUrl: %s is the Alertmanager container itself, not the Docker host: use an address the container reaches, e.g. the host's own address", host)
		ok = false
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			p.addf("polls:alertWebhookUrl: port %q is out of range: use 1 to 65535", port)
			ok = false
		}
	}
	token = strings.TrimSpace(token)
	if strings.ContainsAny(token, " \t\r\n") {
		// The token's content never goes into a message: it is a secret.
		p.addf("polls:alertWebhookToken: contains whitespace or a line break: it is sent as one HTTP header value, set it without them")
		ok = false
	}
	if !ok {
		return nil
	}
	return &Webhook{URL: u.String(), Token: token}
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}
