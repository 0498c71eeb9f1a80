package metrics

import (
	"github.com/polls-tenants/polls/agent/acme"
	"github.com/prometheus/client_golang/prometheus"
)

// Certificates reports the router's certificates as the ACME companion
// last recorded them (its status.json, which the exporter reads from the
// companion's state volume, mounted read-only): per host, when its
// certificate expires and since when its orders fail. Read at each scrape,
// so a renewal shows at the next one.
type Certificates struct {
	store  acme.Store
	expiry *prometheus.Desc
	valid  *prometheus.Desc
	since  *prometheus.Desc
	up     *prometheus.Desc
}

// NewCertificates reads the companion's state in dir.
func NewCertificates(stack, dir string) *Certificates {
	constant := prometheus.Labels{"stack": stack}
	labels := []string{"tenant", "host"}
	return &Certificates{
		store:  acme.Store{Dir: dir},
		expiry: prometheus.NewDesc("polls_certificate_expiry_timestamp_seconds", "When the certificate the router serves for a host expires (Unix time); absent while it has none.", labels, constant),
		valid:  prometheus.NewDesc("polls_certificate_valid", "1 if the router serves a valid certificate for the host, 0 if none is issued yet or its orders fail.", labels, constant),
		since:  prometheus.NewDesc("polls_certificate_failing_since_timestamp_seconds", "Since when the orders of a host's certificate fail in a row (Unix time); absent while they do not. The CA's error: polls-agent acme status in the companion.", labels, constant),
		up:     prometheus.NewDesc("polls_certificate_status_up", "1 if the exporter could read the certificate companion's status.", nil, constant),
	}
}

// Describe sends the descriptors of every series.
func (c *Certificates) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.expiry
	ch <- c.valid
	ch <- c.since
	ch <- c.up
}

// Collect reads status.json and sends one series per host.
func (c *Certificates) Collect(ch chan<- prometheus.Metric) {
	st, err := c.store.LoadStatus()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, h := range st.Hosts {
		valid := 0.0
		if h.State == "valid" {
			valid = 1
		}
		ch <- prometheus.MustNewConstMetric(c.valid, prometheus.GaugeValue, valid, h.Tenant, h.Host)
		if !h.NotAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(h.NotAfter.Unix()), h.Tenant, h.Host)
		}
		if !h.FailingSince.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.since, prometheus.GaugeValue, float64(h.FailingSince.Unix()), h.Tenant, h.Host)
		}
	}
}
