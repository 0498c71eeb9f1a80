package acme

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Host is one host name the router serves for a tenant.
type Host struct {
	Name   string `json:"host"`
	Tenant string `json:"tenant"`
}

// hostName is what may be a host in the hosts file: lower-case DNS labels.
var hostName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// ParseHosts reads the hosts file the router's shared config installs
// (conf.d/acme.hosts): one "host tenant" per line. A line that is not is
// an error naming it; the file is written by the program, so it never
// should be.
func ParseHosts(r io.Reader) ([]Host, error) {
	var hosts []Host
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || !hostName.MatchString(f[0]) || len(f[0]) > 253 {
			return nil, fmt.Errorf("line %d: %q is not \"host tenant\"", n, line)
		}
		hosts = append(hosts, Host{Name: f[0], Tenant: f[1]})
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	return hosts, sc.Err()
}

// The challenge types a certificate is issued with.
const (
	HTTP01 = "http-01"
	DNS01  = "dns-01"
)

// Want is one certificate the companion keeps: a host's own, by HTTP-01,
// or the domain's wildcard, by DNS-01, shared by the hosts it covers.
type Want struct {
	// Name is the certificate's one domain: a host, or "*.<domain>".
	Name      string
	Challenge string
	// Hosts are the hosts it serves, sorted.
	Hosts []Host
}

// Wanted returns the certificates the hosts need, sorted by name. With
// wildcard set, every host one label under domain shares *.<domain>;
// every other host has its own.
func Wanted(hosts []Host, domain string, wildcard bool) []Want {
	byName := map[string]*Want{}
	for _, h := range hosts {
		name, challenge := h.Name, HTTP01
		if wildcard && Covers(domain, h.Name) {
			name, challenge = "*."+domain, DNS01
		}
		w := byName[name]
		if w == nil {
			w = &Want{Name: name, Challenge: challenge}
			byName[name] = w
		}
		w.Hosts = append(w.Hosts, h)
	}
	out := make([]Want, 0, len(byName))
	for _, w := range byName {
		sort.Slice(w.Hosts, func(i, j int) bool { return w.Hosts[i].Name < w.Hosts[j].Name })
		out = append(out, *w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Covers reports whether *.<domain> is valid for host: host is exactly one
// label under domain.
func Covers(domain, host string) bool {
	label, ok := strings.CutSuffix(host, "."+domain)
	return ok && label != "" && !strings.Contains(label, ".")
}

// Meta describes a stored certificate.
type Meta struct {
	Name      string    `json:"name"`
	Domains   []string  `json:"domains"`
	Directory string    `json:"directory"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	IssuedAt  time.Time `json:"issuedAt"`
}

// RenewAt is when a certificate is due: renewBefore ahead of its expiry,
// but never in the first half of its lifetime, so a renewBefore longer
// than what the CA issues cannot make the companion renew in a loop.
func (m Meta) RenewAt(renewBefore time.Duration) time.Time {
	if half := m.NotAfter.Sub(m.NotBefore) / 2; renewBefore > half {
		renewBefore = half
	}
	return m.NotAfter.Add(-renewBefore)
}

// Record is what the companion remembers of a certificate's orders: it is
// kept in the state volume, so backoff survives restarts.
type Record struct {
	// Attempts counts the failed orders since the last success;
	// SelfChecks the failed self-checks in a row, which asked nothing of
	// the CA (see selfCheck).
	Attempts     int       `json:"attempts,omitempty"`
	SelfChecks   int       `json:"selfChecks,omitempty"`
	FailingSince time.Time `json:"failingSince,omitzero"`
	LastError    string    `json:"lastError,omitempty"`
	LastAttempt  time.Time `json:"lastAttempt,omitzero"`
	NextAttempt  time.Time `json:"nextAttempt,omitzero"`
}

// Due reports whether the wanted certificate must be ordered now, and why.
// have is the stored certificate (nil for none), force an operator's
// request, which alone may skip the backoff.
func Due(w Want, have *Meta, rec Record, directory string, renewBefore time.Duration, now time.Time, force bool) (bool, string) {
	var reason string
	switch {
	case force:
		return true, "renewal requested"
	case have == nil:
		reason = "no certificate yet"
	case have.Directory != directory:
		reason = "issued by another ACME directory (" + have.Directory + ")"
	case !slices.Equal(have.Domains, []string{w.Name}):
		reason = "issued for " + strings.Join(have.Domains, ", ")
	case !now.Before(have.RenewAt(renewBefore)):
		reason = "expires " + have.NotAfter.UTC().Format(time.RFC3339)
	default:
		return false, ""
	}
	if (rec.Attempts > 0 || rec.SelfChecks > 0) && now.Before(rec.NextAttempt) {
		return false, reason
	}
	return true, reason
}

// Backoff is how long to wait after the attempts-th failed order in a
// row: 5 minutes, doubling to at most 12 hours, and at least an hour after
// the CA said to slow down. Let's Encrypt allows 5 failed validations per
// host and account an hour; this makes 4 at most.
func Backoff(attempts int, rateLimited bool) time.Duration {
	d := 5 * time.Minute
	for i := 1; i < attempts && d < 12*time.Hour; i++ {
		d *= 2
	}
	if d > 12*time.Hour {
		d = 12 * time.Hour
	}
	if rateLimited && d < time.Hour {
		d = time.Hour
	}
	return d
}

// Failed returns rec after a failed order at now with err.
func (rec Record) Failed(now time.Time, err string, rateLimited bool) Record {
	if rec.FailingSince.IsZero() {
		rec.FailingSince = now
	}
	rec.SelfChecks = 0
	rec.Attempts++
	rec.LastError = err
	rec.LastAttempt = now
	rec.NextAttempt = now.Add(Backoff(rec.Attempts, rateLimited))
	return rec
}

// SelfCheckFailed returns rec after a failed self-check at now: no order
// was made, so the CA's failures (Attempts) and their backoff stay as
// they were, and the next try comes after SelfCheckBackoff; a backoff of
// the CA's still running is kept.
func (rec Record) SelfCheckFailed(now time.Time, err string) Record {
	if rec.FailingSince.IsZero() {
		rec.FailingSince = now
	}
	rec.SelfChecks++
	rec.LastError = err
	rec.LastAttempt = now
	if next := now.Add(SelfCheckBackoff(rec.SelfChecks)); next.After(rec.NextAttempt) {
		rec.NextAttempt = next
	}
	return rec
}
