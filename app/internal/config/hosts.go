package config

import (
	"net"
	"strings"
)

// HostAllowed reports whether the Host header value host (a port, if any,
// is ignored) matches one of allowed, with Django's ALLOWED_HOSTS rules:
// "*" matches anything, ".example.com" matches example.com and its
// subdomains, anything else must match exactly, case-insensitively.
func HostAllowed(allowed []string, host string) bool {
	host = strings.ToLower(stripPort(host))
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	for _, a := range allowed {
		a = strings.Trim(strings.ToLower(a), "[]")
		switch {
		case a == "*":
			return true
		case strings.HasPrefix(a, "."):
			if host == a[1:] || strings.HasSuffix(host, a) {
				return true
			}
		case a == host:
			return true
		}
	}
	return false
}

// stripPort removes a port and the brackets of an IPv6 literal.
func stripPort(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}
