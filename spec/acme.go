package spec

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The ACME directories polls:acmeDirectory names by one word.
const (
	LetsEncryptProduction = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStaging    = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// Defaults of the ACME keys; Pulumi.yaml documents the same values.
const (
	DefaultACMEDirectory   = "production"
	DefaultACMERenewBefore = "30d"
)

// acmeKeys are the keys that mean something only with polls:acmeEmail.
var acmeKeys = []string{"acmeDirectory", "acmeCaRoot", "acmeDnsProvider", "acmeDnsCredentials", "acmeDnsResolvers", "acmeRenewBefore"}

// ACME is how the router's certificates are issued and renewed by itself.
type ACME struct {
	// Email is the ACME account's contact.
	Email string
	// Directory is the ACME server's directory URL.
	Directory string
	// CARoot is PEM certificates that sign the ACME server's own HTTPS
	// certificate, for a private CA; "" trusts the system's roots.
	CARoot string
	// DNSProvider is the lego DNS provider code that answers DNS-01 for the
	// wildcard *.<domain>; "" issues every host by HTTP-01.
	DNSProvider string
	// DNSCredentials are the provider's variables (secret): callers wrap
	// them in a Pulumi secret before use.
	DNSCredentials map[string]string
	// DNSResolvers, when set, are the DNS servers (host:port) asked whether
	// a DNS-01 record is visible, instead of the zone's authoritative ones.
	DNSResolvers []string
	// RenewBefore is how long before expiry a certificate is renewed.
	RenewBefore time.Duration
}

// acme reads the polls:acme* keys; it returns nil when polls:acmeEmail is
// unset, after refusing the other keys that would then be ignored. A key
// at its Pulumi.yaml default counts as unset: Pulumi passes the program
// those defaults as values.
func (p *parser) acme() *ACME {
	email := strings.TrimSpace(p.values["acmeEmail"])
	if email == "" {
		for _, k := range acmeKeys {
			v := strings.TrimSpace(p.values[k])
			if v == "" || (k == "acmeDirectory" && v == DefaultACMEDirectory) || (k == "acmeRenewBefore" && v == DefaultACMERenewBefore) || (k == "acmeDnsResolvers" && v == "[]") || (k == "acmeDnsCredentials" && v == "{}") {
				continue
			}
			p.addf("polls:%s: used only with polls:acmeEmail, which is unset: set the ACME account's contact with `pulumi config set polls:acmeEmail ops@example.com`, or remove it with `pulumi config rm polls:%s`", k, k)
		}
		return nil
	}
	a := &ACME{Email: email}
	if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email || addr.Name != "" || !strings.Contains(email[strings.LastIndex(email, "@")+1:], ".") || strings.ContainsAny(email, " ;{}'\"$#") {
		p.addf("polls:acmeEmail: %q is not an email address: give the ACME account's contact as user@domain, e.g. `pulumi config set polls:acmeEmail ops@example.com`", email)
	}
	a.Directory = p.acmeDirectory()
	if root := p.values["acmeCaRoot"]; strings.TrimSpace(root) != "" {
		if n, err := pemCertificates(root); err != nil || n == 0 {
			p.addf("polls:acmeCaRoot: not PEM certificates (%v): give the private CA's root, e.g. `pulumi config set polls:acmeCaRoot -- \"$(cat root.pem)\"`, or remove it to trust the system's roots", orNone(err))
		} else {
			a.CARoot = root
		}
	}
	a.DNSProvider = strings.TrimSpace(p.values["acmeDnsProvider"])
	a.DNSCredentials = p.acmeCredentials(a.DNSProvider)
	a.DNSResolvers = p.acmeResolvers()
	a.RenewBefore = p.renewBefore()
	return a
}

func (p *parser) acmeDirectory() string {
	v := strings.TrimSpace(p.str("acmeDirectory", DefaultACMEDirectory))
	switch v {
	case "", "production":
		return LetsEncryptProduction
	case "staging":
		return LetsEncryptStaging
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" || strings.ContainsAny(v, " \t\n") {
		p.addf("polls:acmeDirectory: %q is not an ACME directory: use production (Let's Encrypt, the default), staging (Let's Encrypt's staging), or the https:// URL of an RFC 8555 server's directory, e.g. https://acme.example.com/directory", v)
		return ""
	}
	return v
}

// acmeCredentials reads polls:acmeDnsCredentials, a JSON map of the DNS
// provider's variables, and checks them against what lego documents for
// provider. Values never appear in messages: they are secrets.
func (p *parser) acmeCredentials(provider string) map[string]string {
	raw := strings.TrimSpace(p.values["acmeDnsCredentials"])
	creds := map[string]string{}
	if raw != "" && raw != "{}" {
		var values map[string]any
		if err := json.Unmarshal([]byte(raw), &values); err != nil {
			p.addf("polls:acmeDnsCredentials: must be a JSON map of the DNS provider's variables, e.g. `pulumi config set --secret polls:acmeDnsCredentials '{\"CF_DNS_API_TOKEN\":\"...\"}'`")
			return nil
		}
		for _, k := range sortedKeys(values) {
			switch v := values[k].(type) {
			case string:
				creds[k] = v
			case float64, bool:
				creds[k] = strings.TrimSpace(string(mustJSON(v)))
			default:
				p.addf("polls:acmeDnsCredentials: %q must be a string", k)
			}
		}
	}
	if provider == "" {
		if len(creds) > 0 {
			p.addf("polls:acmeDnsCredentials: set while polls:acmeDnsProvider is not: name the DNS provider they are for, e.g. `pulumi config set polls:acmeDnsProvider cloudflare`, or remove them with `pulumi config rm polls:acmeDnsCredentials`")
		}
		return nil
	}
	info, known := DNSProviders[provider]
	if !known {
		hint := ""
		if near := nearProviders(provider); len(near) > 0 {
			hint = " (did you mean " + strings.Join(near, ", ") + "?)"
		}
		p.addf("polls:acmeDnsProvider: %q is not a DNS provider the certificate companion knows%s: use one of lego's provider codes it is built with (`polls-agent acme providers` lists them), e.g. cloudflare, digitalocean, ovh, route53, httpreq, exec", provider, hint)
		return creds
	}
	if len(info.Credentials) == 0 && len(info.Additional) == 0 {
		// lego documents no variables for it (exec, manual): nothing to
		// check them against.
		return creds
	}
	var unknown []string
	for k := range creds {
		if !slices.Contains(info.Credentials, k) && !slices.Contains(info.Additional, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		p.addf("polls:acmeDnsCredentials: %q is not a variable of DNS provider %s: its variables are %s", k, provider, strings.Join(append(append([]string(nil), info.Credentials...), info.Additional...), ", "))
	}
	if len(info.Credentials) > 0 && !slices.ContainsFunc(info.Credentials, func(k string) bool { return creds[k] != "" }) {
		p.addf("polls:acmeDnsCredentials: missing for DNS provider %s: give its credentials (some of %s) as a secret JSON map, e.g. `pulumi config set --secret polls:acmeDnsCredentials '{\"%s\":\"...\"}'`", provider, strings.Join(info.Credentials, ", "), info.Credentials[0])
	}
	return creds
}

// nearProviders returns the known provider codes within two edits of
// name: the likely typos.
func nearProviders(name string) []string {
	var near []string
	for code := range DNSProviders {
		if editDistance(code, name) <= 2 {
			near = append(near, code)
		}
	}
	sort.Strings(near)
	return near
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func (p *parser) acmeResolvers() []string {
	raw := strings.TrimSpace(p.values["acmeDnsResolvers"])
	if raw == "" || raw == "[]" {
		return nil
	}
	var list []string
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		p.addf("polls:acmeDnsResolvers: must be a list of DNS servers as host:port, e.g. [\"10.0.0.53:53\"]")
		return nil
	}
	for _, r := range list {
		host, port, err := net.SplitHostPort(r)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 || (net.ParseIP(host) == nil && !isHostname(host)) {
			p.addf("polls:acmeDnsResolvers: %q is not host:port: give each DNS server with its port, e.g. 10.0.0.53:53", r)
		}
	}
	return list
}

// renewBefore reads polls:acmeRenewBefore: whole days ("30d") or a Go
// duration ("720h").
func (p *parser) renewBefore() time.Duration {
	v := strings.TrimSpace(p.str("acmeRenewBefore", DefaultACMERenewBefore))
	d, err := ParseRenewBefore(v)
	if err != nil {
		p.addf("polls:acmeRenewBefore: %q %v: use days such as 30d, or a duration such as 720h, from 1h to 365d", v, err)
		return 0
	}
	return d
}

// ParseRenewBefore parses whole days ("30d") or a Go duration ("720h"),
// from one hour to a year.
func ParseRenewBefore(v string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("is not a number of days")
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, fmt.Errorf("is not a duration")
		}
	}
	if d < time.Hour || d > 365*24*time.Hour {
		return 0, fmt.Errorf("is out of range")
	}
	return d, nil
}

// pemCertificates counts the certificates in PEM text, failing on any block
// that is not a parsable certificate.
func pemCertificates(text string) (int, error) {
	rest := []byte(text)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return n, fmt.Errorf("a %s block", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return n, err
		}
		n++
	}
	if strings.TrimSpace(string(rest)) != "" {
		return n, fmt.Errorf("text outside PEM blocks")
	}
	return n, nil
}

func orNone(err error) string {
	if err == nil {
		return "no certificate found"
	}
	return err.Error()
}

// acmeWithTLS refuses a given certificate together with ACME: both would
// serve the same hosts, and the given certificate would never be renewed.
func (p *parser) acmeWithTLS(s Stack) {
	if s.ACME == nil || s.TLS == nil {
		return
	}
	var covered []string
	if b, _ := pem.Decode([]byte(s.TLS.CertificatePEM)); b != nil {
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			for _, t := range s.Tenants {
				for _, h := range t.ServerNames(s.Domain) {
					if c.VerifyHostname(h) == nil {
						covered = append(covered, h)
					}
				}
			}
		}
	}
	what := "the same hosts"
	if len(covered) > 0 {
		what = "hosts " + strings.Join(covered, ", ")
	}
	p.addf("polls:tlsCertificate: set together with polls:acmeEmail, so ACME and the given certificate would both serve %s: keep one, either `pulumi config rm polls:tlsCertificate && pulumi config rm polls:tlsKey` to let ACME issue every host, or `pulumi config rm polls:acmeEmail` to keep the given certificate", what)
}

// DNSProvider is what lego documents of a DNS provider: its name and the
// variables it reads (credentials, and additional settings).
type DNSProvider struct {
	Name        string
	Credentials []string
	Additional  []string
}

// ACMEHost is one host name the certificate companion keeps a certificate
// for.
type ACMEHost struct {
	Host   string
	Tenant string
	// Wildcard is set when the host is covered by *.<domain>, issued by
	// DNS-01; otherwise the host has its own certificate, by HTTP-01.
	Wildcard bool
}

// ACMEHosts returns every host of every tenant with how its certificate is
// issued, sorted by host.
func (s Stack) ACMEHosts() []ACMEHost {
	var hosts []ACMEHost
	for _, t := range s.Tenants {
		for _, h := range t.ServerNames(s.Domain) {
			hosts = append(hosts, ACMEHost{Host: h, Tenant: t.Name, Wildcard: s.ACME != nil && s.ACME.DNSProvider != "" && WildcardCovers(s.Domain, h)})
		}
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Host < hosts[j].Host })
	return hosts
}

// WildcardCovers reports whether *.<domain> is valid for host: host is one
// label under domain.
func WildcardCovers(domain, host string) bool {
	label, ok := strings.CutSuffix(host, "."+domain)
	return ok && label != "" && !strings.Contains(label, ".")
}
