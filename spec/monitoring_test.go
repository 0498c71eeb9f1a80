package spec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseMonitoring ensures polls:monitoring and its keys become the
// expected Monitoring: off by default, Pulumi.yaml's defaults passed as
// values change nothing, and exporters runs no Prometheus.
func TestParseMonitoring(t *testing.T) {
	on := &Monitoring{Prometheus: true, Port: 9090, PrometheusImage: DefaultPrometheusImage, AlertmanagerImage: DefaultAlertmanagerImage}
	with := func(f func(*Monitoring)) *Monitoring {
		m := *on
		f(&m)
		return &m
	}
	tests := []struct {
		name   string
		values map[string]string
		want   *Monitoring
	}{
		{"off by default", nil, nil},
		{"off with Pulumi.yaml's defaults as values", map[string]string{"monitoring": "false", "monitoringPort": "9090", "prometheusImage": DefaultPrometheusImage, "alertmanagerImage": DefaultAlertmanagerImage, "alertWebhookUrl": "", "alertWebhookToken": ""}, nil},
		{"on", map[string]string{"monitoring": "true"}, on},
		{"on, written as a boolean", map[string]string{"monitoring": "True"}, on},
		{"exporters only", map[string]string{"monitoring": "exporters", "monitoringPort": "9090"}, with(func(m *Monitoring) { m.Prometheus = false })},
		{"a webhook with a token, own port and images", map[string]string{
			"monitoring": "true", "monitoringPort": "19090", "prometheusImage": "polls-local/prometheus:2", "alertmanagerImage": "polls-local/alertmanager:0",
			"alertWebhookUrl": " https://alerts.example.com:8443/hook/polls ", "alertWebhookToken": "s3cret-token\n",
		}, with(func(m *Monitoring) {
			m.Port, m.PrometheusImage, m.AlertmanagerImage = 19090, "polls-local/prometheus:2", "polls-local/alertmanager:0"
			m.Webhook = &Webhook{URL: "https://alerts.example.com:8443/hook/polls", Token: "s3cret-token"}
		})},
		{"a webhook on an address without a token", map[string]string{"monitoring": "true", "alertWebhookUrl": "http://172.17.0.1:5001/"},
			with(func(m *Monitoring) { m.Webhook = &Webhook{URL: "http://172.17.0.1:5001/"} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.values)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, s.Monitoring); diff != "" {
				t.Errorf("Monitoring (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseMonitoringInvalid ensures every bad monitoring value is refused
// naming its key and the fix, and that the token never shows in a message.
func TestParseMonitoringInvalid(t *testing.T) {
	const token = "hunter2-token"
	tests := []struct {
		name   string
		values map[string]string
		want   []string
	}{
		{"not a mode", map[string]string{"monitoring": "yes please"}, []string{`polls:monitoring: "yes please" is not accepted`, "true", "exporters", "false"}},
		{"keys while off", map[string]string{"monitoringPort": "9999", "alertWebhookUrl": "https://a.example/hook"},
			[]string{"polls:monitoringPort: set while polls:monitoring is false", "polls:alertWebhookUrl: set while polls:monitoring is false", "pulumi config set polls:monitoring true"}},
		{"keys with exporters only", map[string]string{"monitoring": "exporters", "alertWebhookUrl": "https://a.example/hook", "prometheusImage": "p:1"},
			[]string{"polls:alertWebhookUrl: used only with polls:monitoring true", "polls:prometheusImage: used only with polls:monitoring true"}},
		{"port of the router", map[string]string{"monitoring": "true", "monitoringPort": "8080"}, []string{"polls:monitoringPort: 8080 is also polls:httpPort", "pulumi config set polls:monitoringPort 9090"}},
		{"port of the router's HTTPS", map[string]string{"monitoring": "true", "httpsPort": "9090"}, []string{"polls:monitoringPort: 9090 is also polls:httpsPort", "pulumi config set polls:monitoringPort 9091"}},
		{"port out of range", map[string]string{"monitoring": "true", "monitoringPort": "70000"}, []string{"polls:monitoringPort: 70000 is out of range"}},
		{"bad image", map[string]string{"monitoring": "true", "alertmanagerImage": "alert manager"}, []string{`polls:alertmanagerImage: "alert manager" is not an image reference`}},
		{"not a URL", map[string]string{"monitoring": "true", "alertWebhookUrl": "alerts.example.com/hook"}, []string{`polls:alertWebhookUrl: "alerts.example.com/hook" is not a webhook URL`, "https://alerts.example.com/hook"}},
		{"not http", map[string]string{"monitoring": "true", "alertWebhookUrl": "ftp://alerts.example.com/hook"}, []string{"polls:alertWebhookUrl", "is not a webhook URL"}},
		{"a password in the URL", map[string]string{"monitoring": "true", "alertWebhookUrl": "https://ops:" + token + "@alerts.example.com/hook"},
			[]string{"polls:alertWebhookUrl: has a user or password in it", "pulumi config set --secret polls:alertWebhookToken"}},
		{"a token in the query", map[string]string{"monitoring": "true", "alertWebhookUrl": "https://alerts.example.com/hook?token=" + token},
			[]string{"polls:alertWebhookUrl: has a query", "polls:alertWebhookToken"}},
		{"loopback", map[string]string{"monitoring": "true", "alertWebhookUrl": "http://127.0.0.1:5001/"}, []string{"polls:alertWebhookUrl: 127.0.0.1 is the Alertmanager container itself"}},
		{"localhost", map[string]string{"monitoring": "true", "alertWebhookUrl": "http://localhost:5001/"}, []string{"polls:alertWebhookUrl: localhost is the Alertmanager container itself"}},
		{"token without URL", map[string]string{"monitoring": "true", "alertWebhookToken": token}, []string{"polls:alertWebhookToken: set without polls:alertWebhookUrl"}},
		{"token with a space", map[string]string{"monitoring": "true", "alertWebhookUrl": "https://a.example/h", "alertWebhookToken": "hunter2 token"}, []string{"polls:alertWebhookToken: contains whitespace"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.values)
			if err == nil {
				t.Fatalf("Parse(%v) = nil error; want one containing %q", tt.values, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error = %q; want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Parse error shows the secret: %q", err)
			}
		})
	}
}
