package spec

import (
	"crypto/tls"
	"encoding/pem"
	"net/url"
	"regexp"
	"strings"
)

// MinMemoryMB is the smallest memory limit Docker accepts (6 MiB).
const MinMemoryMB = 6

var (
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	buildArgName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	networkName  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)
	// imageRef is Docker's reference grammar, name[:tag][@sha256:hex], or a
	// bare image ID.
	imageRef = regexp.MustCompile(`^(?:sha256:[a-f0-9]{64}|[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?)$`)
)

// isDNSLabel reports whether s is a lower-case DNS label: 1-63 characters of
// a-z, 0-9 and '-', not starting or ending with '-'. Such a name is safe in
// container, network and volume names, DNS aliases and nginx config.
func isDNSLabel(s string) bool { return dnsLabel.MatchString(s) }

// isHostname reports whether s is a lower-case host name of DNS labels, at
// most 253 characters. Nothing that could end an nginx token (spaces, ';',
// braces, quotes) passes.
func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !isDNSLabel(label) {
			return false
		}
	}
	return true
}

func isImageRef(s string) bool { return len(s) <= 255 && imageRef.MatchString(s) }

func isBuildArgName(s string) bool { return buildArgName.MatchString(s) }

func isBuildNetwork(s string) bool { return s == "" || networkName.MatchString(s) }

func isDockerHost(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "unix", "npipe":
		return u.Path != ""
	case "tcp", "ssh", "http", "https":
		return u.Host != ""
	}
	return false
}

// tls reads polls:tlsCertificate and polls:tlsKey: both or neither, each PEM,
// and the key must belong to the certificate.
func (p *parser) tls() *TLS {
	// Empty is unset: Pulumi.yaml declares both with default "".
	cert, key := p.values["tlsCertificate"], p.values["tlsKey"]
	hasCert, hasKey := strings.TrimSpace(cert) != "", strings.TrimSpace(key) != ""
	switch {
	case !hasCert && !hasKey:
		return nil
	case hasKey && !hasCert:
		p.addf("polls:tlsCertificate: missing while polls:tlsKey is set: add the PEM certificate chain with `pulumi config set polls:tlsCertificate -- \"$(cat cert.pem)\"`, or remove the key")
		return nil
	case hasCert && !hasKey:
		p.addf("polls:tlsKey: missing while polls:tlsCertificate is set: add the PEM private key with `pulumi config set --secret polls:tlsKey -- \"$(cat key.pem)\"`, or remove the certificate")
		return nil
	}
	ok := true
	if b, _ := pem.Decode([]byte(cert)); b == nil || b.Type != "CERTIFICATE" {
		p.addf("polls:tlsCertificate: not a PEM certificate: expected a block starting with -----BEGIN CERTIFICATE-----")
		ok = false
	}
	if b, _ := pem.Decode([]byte(key)); b == nil || !strings.HasSuffix(b.Type, "PRIVATE KEY") {
		// The key's content never goes into a message: it is a secret.
		p.addf("polls:tlsKey: not a PEM private key: expected a block starting with -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY)")
		ok = false
	}
	if !ok {
		return nil
	}
	if _, err := tls.X509KeyPair([]byte(cert), []byte(key)); err != nil {
		p.addf("polls:tlsKey: does not fit polls:tlsCertificate (or either fails to parse): give the key that signed the certificate")
		return nil
	}
	return &TLS{CertificatePEM: cert, KeyPEM: key}
}
