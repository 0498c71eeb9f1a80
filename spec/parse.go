package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/polls-tenants/polls/subnets"
)

// Namespace is the stack config namespace: the Pulumi project name.
const Namespace = "polls"

// Keys lists every stack config key the program reads, without namespace.
// Any other key in the namespace is a typo and is rejected.
var Keys = []string{
	"tenants", "domain", "httpPort", "httpsPort", "tlsCertificate", "tlsKey",
	"postgresImage", "nginxImage", "appBuildArgs", "appBuildNetwork", "appBuilder",
	"migrations", "appMemoryMb", "dbMemoryMb", "adminUser", "dockerHost", "subnetPool",
	"platform", "registry", "registryUsername", "registryPassword",
	"acmeEmail", "acmeDirectory", "acmeCaRoot", "acmeDnsProvider", "acmeDnsCredentials",
	"acmeDnsResolvers", "acmeRenewBefore",
	"backups", "backupRepository", "backupSchedule", "backupKeepDays", "backupKeepWeeks",
	"backupKey", "backupSshKey", "backupSshKnownHosts",
	"monitoring", "monitoringPort", "prometheusImage", "alertmanagerImage", "alertWebhookUrl", "alertWebhookToken",
}

// SecretKeys are the keys whose values must be stored as Pulumi secrets,
// each with the command that sets one so.
var SecretKeys = []struct{ Key, Set string }{
	{"tlsKey", `pulumi config set --secret polls:tlsKey -- "$(cat key.pem)"`},
	{"registryPassword", `pulumi config set --secret polls:registryPassword -- "$PASSWORD"`},
	{"acmeDnsCredentials", `pulumi config set --secret polls:acmeDnsCredentials '{"CF_DNS_API_TOKEN":"..."}'`},
	{"backupKey", `pulumi config set --secret polls:backupKey -- "$(openssl rand -base64 32)"`},
	{"backupSshKey", `pulumi config set --secret polls:backupSshKey -- "$(cat id_ed25519)"`},
	{"alertWebhookToken", `pulumi config set --secret polls:alertWebhookToken -- "$TOKEN"`},
}

// tenantFields lists the fields a tenant object may have.
var tenantFields = []string{"name", "hosts", "memoryMb", "image", "replicas", "node", "restore", "restoreFrom", "rotation"}

// swarmTenantFields are the tenant fields that only Swarm has a use for.
var swarmTenantFields = []string{"replicas", "node"}

// Parse turns raw stack config values into a validated Stack. values maps a
// key without namespace ("tenants") to its raw config string, as Pulumi passes
// it to programs: JSON for lists and objects, plain text otherwise. Missing
// keys take their defaults. The error, if any, lists every problem found, each
// naming the key, the tenant where there is one, and what would be accepted.
func Parse(values map[string]string) (Stack, error) {
	return parseAt(values, time.Now)
}

// parseAt is Parse with a clock, for the checks of restore times.
func parseAt(values map[string]string, now func() time.Time) (Stack, error) {
	p := &parser{values: values, now: now}
	s := Stack{
		Domain:          p.str("domain", DefaultDomain),
		HTTPPort:        p.port("httpPort", DefaultHTTPPort),
		HTTPSPort:       p.port("httpsPort", DefaultHTTPSPort),
		PostgresImage:   p.image("postgresImage", DefaultPostgresImage),
		NginxImage:      p.image("nginxImage", DefaultNginxImage),
		AppBuildArgs:    p.buildArgs("appBuildArgs"),
		AppBuildNetwork: p.str("appBuildNetwork", ""),
		AppBuilder:      p.str("appBuilder", DefaultAppBuilder),
		Migrations:      p.str("migrations", DefaultMigrations),
		AppMemoryMB:     p.memory("appMemoryMb", DefaultAppMemoryMB),
		DBMemoryMB:      p.memory("dbMemoryMb", DefaultDBMemoryMB),
		AdminUser:       p.str("adminUser", DefaultAdminUser),
		DockerHost:      p.str("dockerHost", ""),
		SubnetPool:      p.pool("subnetPool", DefaultSubnetPool),
		Platform:        p.str("platform", DefaultPlatform),
		Registry:        strings.TrimSpace(p.str("registry", "")),
	}
	p.unknownKeys()
	if !isHostname(s.Domain) {
		p.addf("polls:domain: %q is not a valid lower-case host name: use dot-separated DNS labels, e.g. polls.example.com", s.Domain)
	}
	if !isBuildNetwork(s.AppBuildNetwork) {
		p.addf("polls:appBuildNetwork: %q is not a network mode: use \"\" (Docker's default), \"host\", \"none\" or a network name of a-z, 0-9, '.', '_', '-'", s.AppBuildNetwork)
	}
	switch s.AppBuilder {
	case BuilderAuto, BuilderBuildKit, BuilderLegacy:
	default:
		p.addf("polls:appBuilder: %q is not a builder: use \"auto\" (BuildKit where the engine has it), \"buildkit\" or \"legacy\", e.g. `pulumi config set polls:appBuilder auto`", s.AppBuilder)
	}
	if !IsMigrations(s.Migrations) {
		p.addf("polls:migrations: %q is not accepted: use \"container\" (a container of its own before the app, the default) or \"app\" (the app runs it as it starts), e.g. `pulumi config set polls:migrations app`", s.Migrations)
	}
	if !isDNSLabel(s.AdminUser) {
		p.addf("polls:adminUser: %q is not accepted: use 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'", s.AdminUser)
	}
	if s.DockerHost != "" && !isDockerHost(s.DockerHost) {
		p.addf("polls:dockerHost: %q is not a Docker host URL: use unix:///path, tcp://host:port or ssh://user@host", s.DockerHost)
	}
	s.TLS = p.tls()
	s.ACME = p.acme()
	if (s.TLS != nil || s.ACME != nil) && s.HTTPSPort == s.HTTPPort {
		p.addf("polls:httpsPort: %d is also polls:httpPort: give HTTP and HTTPS different ports", s.HTTPSPort)
	}
	s.Tenants = p.tenants(s.Domain)
	p.acmeWithTLS(s)
	s.RegistryAuth = p.platform(s)
	s.Backup = p.backup(s.Platform)
	p.restores(s)
	s.Monitoring = p.monitoring(s)
	if s.SubnetPool.IsValid() && len(s.Tenants) > subnets.Slots(s.SubnetPool) {
		p.addf("polls:subnetPool: %s holds %d tenant subnets (/%d), fewer than the %d tenants: choose a larger pool, e.g. `pulumi config set polls:subnetPool 10.230.0.0/16` (%d subnets)", s.SubnetPool, subnets.Slots(s.SubnetPool), subnets.TenantBits, len(s.Tenants), 1<<(subnets.TenantBits-16))
	}
	if err := p.err(); err != nil {
		return Stack{}, err
	}
	return s, nil
}

// parser accumulates problems so one run reports all of them.
type parser struct {
	values   map[string]string
	now      func() time.Time
	problems []string
	// swarmOnly names the tenant settings given that only Swarm uses.
	swarmOnly []string
}

func (p *parser) addf(format string, args ...any) {
	p.problems = append(p.problems, fmt.Sprintf(format, args...))
}

func (p *parser) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	errs := make([]error, len(p.problems))
	for i, msg := range p.problems {
		errs[i] = errors.New(msg)
	}
	return fmt.Errorf("invalid stack config (nothing was changed):\n%w", errors.Join(errs...))
}

func (p *parser) unknownKeys() {
	known := make(map[string]bool, len(Keys))
	for _, k := range Keys {
		known[k] = true
	}
	var unknown []string
	for k := range p.values {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		p.addf("polls:%s: unknown key (a typo?): known keys are %s; remove it with `pulumi config rm polls:%s`", k, strings.Join(Keys, ", "), k)
	}
}

// defaults are the values Pulumi passes for keys Pulumi.yaml gives a
// default and the stack does not set.
var defaults = map[string]string{
	"backupRepository": DefaultBackupRepository, "backupSchedule": DefaultBackupSchedule,
	"backupKeepDays": strconv.Itoa(DefaultBackupKeepDays), "backupKeepWeeks": strconv.Itoa(DefaultBackupKeepWeeks),
	"monitoring": DefaultMonitoring, "monitoringPort": strconv.Itoa(DefaultMonitoringPort),
	"prometheusImage": DefaultPrometheusImage, "alertmanagerImage": DefaultAlertmanagerImage,
}

// defaultOf is key's default as Pulumi passes it.
func (p *parser) defaultOf(key string) string { return defaults[key] }

func (p *parser) str(key, def string) string {
	if v, ok := p.values[key]; ok {
		return v
	}
	return def
}

func (p *parser) int(key string, def int) (int, bool) {
	v, ok := p.values[key]
	if !ok {
		return def, true
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		p.addf("polls:%s: %q is not a whole number", key, v)
		return def, false
	}
	return n, true
}

func (p *parser) port(key string, def int) int {
	n, ok := p.int(key, def)
	if ok && (n < 1 || n > 65535) {
		p.addf("polls:%s: %d is out of range: use a TCP port from 1 to 65535", key, n)
	}
	return n
}

func (p *parser) memory(key string, def int) int {
	n, ok := p.int(key, def)
	if ok && n != 0 && n < MinMemoryMB {
		p.addf("polls:%s: %d MiB is below Docker's minimum: use %d or more, or 0 for no limit", key, n, MinMemoryMB)
	}
	if ok && n < 0 {
		n = 0
	}
	return n
}

func (p *parser) image(key, def string) string {
	v := p.str(key, def)
	if !isImageRef(v) {
		p.addf("polls:%s: %q is not an image reference: use name[:tag][@digest], e.g. %s", key, v, def)
	}
	return v
}

// pool reads an IPv4 address pool in CIDR notation; an invalid one is
// reported and returned as the zero Prefix.
func (p *parser) pool(key, def string) netip.Prefix {
	v := strings.TrimSpace(p.str(key, def))
	pool, err := netip.ParsePrefix(v)
	if err != nil {
		p.addf("polls:%s: %q is not an IPv4 network in CIDR notation: use e.g. %s", key, v, def)
		return netip.Prefix{}
	}
	if err := subnets.CheckPool(pool); err != nil {
		p.addf("%v", err)
		return netip.Prefix{}
	}
	return pool
}

func (p *parser) buildArgs(key string) map[string]string {
	raw, ok := p.values[key]
	if !ok {
		return map[string]string{}
	}
	// `pulumi config set --path 'polls:appBuildArgs.VERSION' 2` stores a
	// number: numbers and booleans are taken as their text.
	var values map[string]any
	if err := json.Unmarshal([]byte(raw), &values); err != nil {
		p.addf("polls:%s: must be a map of string to string, e.g. {\"GOPROXY\": \"http://127.0.0.1:3001\"}: %v", key, err)
		return map[string]string{}
	}
	args := make(map[string]string, len(values))
	for _, name := range sortedKeys(values) {
		if !isBuildArgName(name) {
			p.addf("polls:%s: %q is not a build arg name: use letters, digits and '_', not starting with a digit", key, name)
		}
		switch v := values[name].(type) {
		case string:
			args[name] = v
		case float64, bool:
			args[name] = strings.TrimSpace(string(mustJSON(v)))
		default:
			p.addf("polls:%s: %q must be a string, got %s", key, name, mustJSON(v))
		}
	}
	return args
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// tenants parses polls:tenants: either a list whose items are names or
// objects with a "name", or a map from tenant name to its settings (an
// object without "name", or null). The map form lets a tenant be removed by
// name (`pulumi config rm --path 'polls:tenants.thor'`); both forms give the
// same tenants, so converting one into the other changes no resource.
func (p *parser) tenants(domain string) []Tenant {
	raw := strings.TrimSpace(p.values["tenants"])
	if raw == "" {
		return []Tenant{}
	}
	var tenants []Tenant
	switch raw[0] {
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal([]byte(raw), &items); err != nil {
			p.addf("polls:tenants: must be a list of tenant names or {\"name\": ...} objects, or a map of name to settings: %v", err)
			return nil
		}
		for i, item := range items {
			if t, ok := p.listItem(i, item); ok {
				tenants = append(tenants, t)
			}
		}
	case '{':
		var items map[string]json.RawMessage
		if err := json.Unmarshal([]byte(raw), &items); err != nil {
			p.addf("polls:tenants: must be a map of tenant name to settings, or a list: %v", err)
			return nil
		}
		for _, name := range sortedKeys(items) {
			if t, ok := p.mapItem(name, items[name]); ok {
				tenants = append(tenants, t)
			}
		}
	default:
		p.addf("polls:tenants: %q is neither a list nor a map: use [\"thor\", \"potter\"] or {\"thor\": {}, \"potter\": {\"hosts\": [...]}}", raw)
		return nil
	}
	if tenants == nil {
		tenants = []Tenant{}
	}
	sortTenants(tenants)
	p.conflicts(tenants, domain)
	return tenants
}

// listItem parses one item of the list form: a name or an object with one.
func (p *parser) listItem(i int, item json.RawMessage) (Tenant, bool) {
	item = bytes.TrimSpace(item)
	path := fmt.Sprintf("polls:tenants[%d]", i)
	if len(item) > 0 && item[0] == '"' {
		var t Tenant
		if err := json.Unmarshal(item, &t.Name); err != nil {
			p.addf("%s: %v", path, err)
			return t, false
		}
		return t, p.checkName(path, t.Name)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(item, &fields); err != nil || fields == nil {
		p.addf("%s: %s is neither a tenant name nor an object: use \"thor\" or {\"name\": \"thor\", \"hosts\": [...]}", path, item)
		return Tenant{}, false
	}
	var name string
	if v, present := fields["name"]; !present {
		p.addf("%s: object has no \"name\": add {\"name\": \"<lower-case DNS label>\"}", path)
		return Tenant{}, false
	} else if err := json.Unmarshal(v, &name); err != nil {
		p.addf("%s (%s): field \"name\" must be a string, got %s", path, rawName(fields), v)
		return Tenant{}, false
	}
	delete(fields, "name")
	if !p.checkName(path, name) {
		return Tenant{}, false
	}
	return p.settings(fmt.Sprintf("%s (%q)", path, name), name, fields)
}

// mapItem parses one entry of the map form: the key is the name, the value
// the settings (null or {} for none).
func (p *parser) mapItem(name string, item json.RawMessage) (Tenant, bool) {
	path := "polls:tenants." + name
	if !isDNSLabel(name) {
		p.addf("polls:tenants: key %q is not a lower-case DNS label: name tenants with 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'", name)
		return Tenant{}, false
	}
	item = bytes.TrimSpace(item)
	// `pulumi config set --path 'polls:tenants.thor' '{}'` stores a string:
	// its content is the settings.
	var text string
	if json.Unmarshal(item, &text) == nil {
		item = bytes.TrimSpace([]byte(text))
	}
	if len(item) == 0 || string(item) == "null" {
		return Tenant{Name: name}, true
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(item, &fields); err != nil || fields == nil {
		p.addf("%s: %s is not an object of settings: use {} or {\"hosts\": [...], \"memoryMb\": 512}", path, item)
		return Tenant{}, false
	}
	if _, present := fields["name"]; present {
		p.addf("%s: has a \"name\" field: in the map form the key is the name; remove the field", path)
		return Tenant{}, false
	}
	return p.settings(path, name, fields)
}

// settings decodes a tenant's optional fields; path names the tenant in
// messages.
func (p *parser) settings(path, name string, fields map[string]json.RawMessage) (Tenant, bool) {
	t := Tenant{Name: name}
	ok := true
	for _, f := range sortedKeys(fields) {
		if !contains(tenantFields, f) {
			p.addf("%s: unknown field %q: tenant fields are %s", path, f, strings.Join(tenantFields[1:], ", "))
			ok = false
		}
	}
	decode := func(field string, into any, want string) {
		v, present := fields[field]
		if !present {
			return
		}
		if err := json.Unmarshal(v, into); err != nil {
			p.addf("%s: field %q must be %s, got %s", path, field, want, v)
			ok = false
		}
	}
	decode("hosts", &t.Hosts, "a list of host names")
	decode("memoryMb", &t.MemoryMB, "a whole number of MiB")
	decode("image", &t.Image, "an image reference string")
	decode("replicas", &t.Replicas, "a whole number of app replicas")
	decode("node", &t.Node, "a Swarm node's hostname")
	decode("restore", &t.Restore, `"latest" or an RFC 3339 time`)
	decode("restoreFrom", &t.RestoreFrom, "a tenant's name")
	decode("rotation", &t.Rotation, "a whole number (raise it to rotate the tenant's passwords)")
	for _, f := range swarmTenantFields {
		if _, present := fields[f]; present {
			p.swarmOnly = append(p.swarmOnly, fmt.Sprintf("%s: field %q", path, f))
		}
	}
	for _, h := range t.Hosts {
		if !isHostname(h) {
			p.addf("%s: host %q is not a valid lower-case host name: use dot-separated DNS labels, e.g. polls.example.com (no wildcards, ports or paths)", path, h)
			ok = false
		}
	}
	if t.MemoryMB < 0 || (t.MemoryMB > 0 && t.MemoryMB < MinMemoryMB) {
		p.addf("%s: memoryMb %d is not accepted: use %d or more, or leave it out for polls:appMemoryMb", path, t.MemoryMB, MinMemoryMB)
		ok = false
	}
	if _, present := fields["replicas"]; present && (t.Replicas < 1 || t.Replicas > MaxReplicas) {
		p.addf("%s: replicas %d is not accepted: use 1 to %d, or leave it out for %d", path, t.Replicas, MaxReplicas, DefaultReplicas)
		ok = false
	}
	if t.Rotation < 0 {
		p.addf("%s: rotation %d is not accepted: use 0 or more (raise it by one to rotate the tenant's passwords)", path, t.Rotation)
		ok = false
	}
	if _, present := fields["node"]; present && !isHostname(t.Node) {
		p.addf("%s: node %q is not a node hostname: use the HOSTNAME column of `docker node ls`", path, t.Node)
		ok = false
	}
	if _, present := fields["image"]; present && !isImageRef(t.Image) {
		p.addf("%s: image %q is not an image reference: use name[:tag][@digest] or an image ID sha256:<hex>", path, t.Image)
		ok = false
	}
	return t, ok
}

func (p *parser) checkName(path, name string) bool {
	if !isDNSLabel(name) {
		p.addf("%s: name %q is not a lower-case DNS label: use 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'", path, name)
		return false
	}
	return true
}

// conflicts rejects duplicate names and host names claimed twice.
func (p *parser) conflicts(tenants []Tenant, domain string) {
	owner := map[string]string{}
	seen := map[string]bool{}
	for _, t := range tenants {
		if seen[t.Name] {
			p.addf("polls:tenants: tenant %q is listed twice: keep one entry", t.Name)
			continue
		}
		seen[t.Name] = true
		for _, h := range t.ServerNames(domain) {
			if prev, taken := owner[h]; taken {
				if prev == t.Name {
					p.addf("polls:tenants (%q): host %q is listed twice for this tenant: keep one", t.Name, h)
				} else {
					p.addf("polls:tenants (%q): host %q is already served by tenant %q: a host belongs to one tenant", t.Name, h, prev)
				}
				continue
			}
			owner[h] = t.Name
		}
	}
}

func rawName(fields map[string]json.RawMessage) string {
	var name string
	if err := json.Unmarshal(fields["name"], &name); err != nil || name == "" {
		return "unnamed"
	}
	return strconv.Quote(name)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	return slices.Contains(list, s)
}
