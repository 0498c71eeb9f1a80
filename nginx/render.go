// Package nginx renders the router's configuration from the tenant list.
//
// The output is an http-context include (the official image's conf.d/*.conf):
// one server per tenant, a default server that answers 404 to any other Host,
// and upstreams resolved per request through Docker's DNS so that nginx starts,
// and keeps serving the others, while a tenant's app is down or not yet created.
// The package is pure: it imports no Pulumi and renders byte-identical output
// for the same input.
package nginx

import (
	"bytes"
	_ "embed"
	"fmt"
	"regexp"
	"sort"
	"text/template"
)

// Config is what the router serves.
type Config struct {
	// Servers are the tenants, in any order: Render sorts them by Name.
	Servers []Server
	// Resolver is the DNS server nginx asks for upstream addresses; Docker's
	// embedded DNS is 127.0.0.11.
	Resolver string
	// Listen and ListenTLS are nginx listen addresses for HTTP and HTTPS:
	// "80" and "443" in the router container, a loopback address in tests.
	Listen    string
	ListenTLS string
	// TLS, when set, adds HTTPS servers and redirects HTTP to HTTPS.
	TLS *TLS
	// ACME, when set instead of TLS, serves each host over HTTPS with the
	// certificate the companion keeps for it, answers HTTP-01 challenges,
	// and redirects a host's HTTP to HTTPS once its certificate exists.
	ACME *ACME
	// Include, when set, is a file glob nginx includes for the tenants'
	// servers instead of Servers: each tenant's file is then rendered by
	// RenderServer and installed on its own.
	Include string
	// Metrics, when set, sends a line per request, naming its tenant, to
	// the metrics exporter.
	Metrics *Metrics
}

// Metrics is where nginx sends its per-request lines.
type Metrics struct {
	// Socket is the exporter's unix datagram socket.
	Socket string
	// NoTenant names the requests for hosts of no tenant (the default
	// server); it cannot be a tenant's name.
	NoTenant string
}

// Server routes a tenant's host names to its app.
type Server struct {
	// Name is the tenant name, used in comments and variable names.
	Name string
	// Hosts are the host names nginx matches (server_name), the first is the
	// tenant's own.
	Hosts []string
	// Upstream is host:port of the tenant's app, e.g. "thor:8000".
	Upstream string
}

// TLS names the certificate files as nginx sees them.
type TLS struct {
	CertificatePath string
	KeyPath         string
}

// ACME names what the certificate companion shares with nginx.
type ACME struct {
	// CertDir holds <host>.crt and <host>.key for each issued host.
	CertDir string
	// Webroot is the root of the HTTP-01 answers
	// (<Webroot>/.well-known/acme-challenge/<token>).
	Webroot string
	// HTTPSPort is the public HTTPS port redirects name; 443 is left out.
	HTTPSPort int
}

// RedirectPort is ":<port>" for a redirect to HTTPSPort, "" for 443.
func (a ACME) RedirectPort() string {
	if a.HTTPSPort == 443 {
		return ""
	}
	return fmt.Sprintf(":%d", a.HTTPSPort)
}

//go:embed router.conf.tmpl
var routerTemplate string

var tmpl = template.Must(template.New("router.conf").Funcs(template.FuncMap{
	"pair": func(c Config, s Server) serverData { return serverData{C: c, S: s} },
}).Parse(routerTemplate))

// serverData is what the "server" template renders: one tenant's servers
// under a config's listen addresses and TLS.
type serverData struct {
	C Config
	S Server
}

var (
	// token is what may reach nginx syntax unquoted: no whitespace, ';',
	// braces, quotes, '$' or '#'.
	hostToken     = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)
	upstreamToken = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?:[0-9]{1,5}$`)
	nameToken     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	pathToken     = regexp.MustCompile(`^/[A-Za-z0-9._/-]+$`)
	globToken     = regexp.MustCompile(`^/[A-Za-z0-9._/*-]+$`)
	resolverToken = regexp.MustCompile(`^[0-9a-f.:\[\]]+$`)
	listenToken   = regexp.MustCompile(`^([0-9.]+:)?[0-9]{1,5}$`)
	// noTenant is a label no tenant can have: tenants are DNS labels.
	noTenant = regexp.MustCompile(`^_[a-z0-9_]{1,30}$`)
)

// Render returns the router configuration. Values are checked again here,
// whatever validated them before, so that nothing can inject nginx syntax.
func Render(c Config) ([]byte, error) {
	if err := check(c); err != nil {
		return nil, fmt.Errorf("render nginx config: %w", err)
	}
	servers := append([]Server(nil), c.Servers...)
	sort.Slice(servers, func(i, j int) bool { return servers[i].Name < servers[j].Name })
	var buf bytes.Buffer
	c.Servers = servers
	if err := tmpl.Execute(&buf, c); err != nil {
		return nil, fmt.Errorf("render nginx config: %w", err)
	}
	return buf.Bytes(), nil
}

// RenderServer returns the servers of one tenant, for the file that
// Config.Include picks up; c supplies the listen addresses and TLS.
func RenderServer(c Config, s Server) ([]byte, error) {
	c.Servers = []Server{s}
	if err := check(c); err != nil {
		return nil, fmt.Errorf("render nginx config of %s: %w", s.Name, err)
	}
	var buf bytes.Buffer
	if err := tmpl.ExecuteTemplate(&buf, "server", serverData{C: c, S: s}); err != nil {
		return nil, fmt.Errorf("render nginx config of %s: %w", s.Name, err)
	}
	return bytes.TrimPrefix(buf.Bytes(), []byte("\n")), nil
}

func check(c Config) error {
	if c.Include != "" && !globToken.MatchString(c.Include) {
		return fmt.Errorf("include %q must be an absolute path or glob of [A-Za-z0-9._/*-]", c.Include)
	}
	if !resolverToken.MatchString(c.Resolver) {
		return fmt.Errorf("resolver %q is not an IP address", c.Resolver)
	}
	if !listenToken.MatchString(c.Listen) || (c.TLS != nil && !listenToken.MatchString(c.ListenTLS)) {
		return fmt.Errorf("listen addresses %q, %q must be [ip:]port", c.Listen, c.ListenTLS)
	}
	if c.ACME != nil {
		if c.TLS != nil {
			return fmt.Errorf("TLS and ACME are exclusive")
		}
		if !pathToken.MatchString(c.ACME.CertDir) || !pathToken.MatchString(c.ACME.Webroot) {
			return fmt.Errorf("ACME paths %q, %q must be absolute paths of [A-Za-z0-9._/-]", c.ACME.CertDir, c.ACME.Webroot)
		}
		if c.ACME.HTTPSPort < 1 || c.ACME.HTTPSPort > 65535 || !listenToken.MatchString(c.ListenTLS) {
			return fmt.Errorf("ACME HTTPS port %d and listen address %q must be a port and [ip:]port", c.ACME.HTTPSPort, c.ListenTLS)
		}
	}
	if m := c.Metrics; m != nil && (!pathToken.MatchString(m.Socket) || !noTenant.MatchString(m.NoTenant)) {
		return fmt.Errorf("metrics socket %q must be an absolute path of [A-Za-z0-9._/-], and its no-tenant label %q '_' and [a-z0-9_]", m.Socket, m.NoTenant)
	}
	if c.TLS != nil && (!pathToken.MatchString(c.TLS.CertificatePath) || !pathToken.MatchString(c.TLS.KeyPath)) {
		return fmt.Errorf("TLS paths %q, %q must be absolute paths of [A-Za-z0-9._/-]", c.TLS.CertificatePath, c.TLS.KeyPath)
	}
	seen := map[string]string{}
	for _, s := range c.Servers {
		if !nameToken.MatchString(s.Name) {
			return fmt.Errorf("server name %q is not a lower-case DNS label", s.Name)
		}
		if !upstreamToken.MatchString(s.Upstream) {
			return fmt.Errorf("server %q: upstream %q is not host:port", s.Name, s.Upstream)
		}
		if len(s.Hosts) == 0 {
			return fmt.Errorf("server %q has no host names", s.Name)
		}
		for _, h := range s.Hosts {
			if !hostToken.MatchString(h) {
				return fmt.Errorf("server %q: host %q is not a lower-case host name", s.Name, h)
			}
			if other, dup := seen[h]; dup {
				return fmt.Errorf("host %q is claimed by servers %q and %q", h, other, s.Name)
			}
			seen[h] = s.Name
		}
	}
	return nil
}
