package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/ports"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/subnets"
	"github.com/polls-tenants/polls/tools/internal/gen"
)

// edgeNetwork names the network the router and every app share, as the
// program's edge network is named after it.
const edgeNetwork = "edge"

var projectName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// maxTenants bounds -n: enough for the benchmark's largest runs.
const maxTenants = 200

// options is what composegen generates.
type options struct {
	Tenants       int
	Port          int
	Project       string
	AppImage      string
	PostgresImage string
	NginxImage    string
	// Taken are subnets other polls stacks' tenant networks already use on
	// the engine: the program plans around them, and so does composegen.
	Taken []netip.Prefix
	// HealthInterval, when set, paces every health check (database and
	// app) instead of the 2 s and 3 s that gate fastest. Each check is a
	// process the engine starts, about a third of a CPU-second here: 100
	// tenants checked every 2-3 s ask more of two cores than they have, the
	// checks time out and compose gives up its `up` on a dependency it
	// sees unhealthy.
	HealthInterval time.Duration
	// Migrations is polls:migrations: spec.MigrationsContainer (a migrate
	// service the app waits for) or spec.MigrationsApp (the app migrates
	// as it starts).
	Migrations string
}

func defaultOptions() options {
	return options{
		Tenants:       2,
		Port:          spec.DefaultHTTPPort,
		Project:       "polls-compose",
		AppImage:      "polls-bench-app:latest",
		PostgresImage: "polls-local/postgres:15",
		NginxImage:    "polls-local/nginx:1",
		Migrations:    spec.DefaultMigrations,
	}
}

// interval is a health check's interval: HealthInterval when set, else
// fastest, the service's own.
func (o options) interval(fastest string) string {
	if o.HealthInterval > 0 {
		return strconv.FormatFloat(o.HealthInterval.Seconds(), 'f', -1, 64) + "s"
	}
	return fastest
}

func (o options) check() error {
	var errs []error
	if o.HealthInterval < 0 || o.HealthInterval > 2*time.Minute {
		errs = append(errs, fmt.Errorf("-health-interval %s: want at most 2m, the program's own idle interval", o.HealthInterval))
	}
	if err := gen.CheckMigrations(o.Migrations); err != nil {
		errs = append(errs, err)
	}
	if o.Tenants < 1 || o.Tenants > maxTenants {
		errs = append(errs, fmt.Errorf("-n %d: want 1 to %d tenants", o.Tenants, maxTenants))
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("-port %d: want 1 to 65535", o.Port))
	}
	if !projectName.MatchString(o.Project) {
		errs = append(errs, fmt.Errorf("-project %q: use lower-case letters, digits, '_', '.' and '-'", o.Project))
	}
	return errors.Join(errs...)
}

// tenantSubnets returns the subnet the program gives each tenant's network
// when the tenants are added one at a time, in the order given (t01, t02,
// …): subnets.Plan over the default polls:subnetPool, around the subnets
// other stacks' tenant networks take (none on an engine of its own).
// Compose takes the same addresses, so it too needs no room in the engine's
// default address pools (which hold about 30 networks).
//
// One at a time, as a stack grows, so that the file for N+1 tenants keeps
// every subnet of the file for N, which compose needs to add a tenant in
// place: planned at once, the names sort as strings, so t100 and t101 would
// come between t10 and t11 and move every later tenant's subnet, and
// compose could not create t101's network in a subnet t11's still holds.
func tenantSubnets(names []string, taken []netip.Prefix) (map[string]netip.Prefix, error) {
	pool := netip.MustParsePrefix(spec.DefaultSubnetPool)
	plan := map[string]netip.Prefix{}
	planned := append([]netip.Prefix(nil), taken...)
	for i, name := range names {
		p, err := subnets.Plan(pool, names[:i+1], plan, []subnets.Network{{Name: "-taken", Subnets: planned, Shared: true}})
		if err != nil {
			return nil, err
		}
		plan = p
		planned = append(planned, p[name])
	}
	return plan, nil
}

// composeFile is the subset of compose file format 2.4 the stack needs. 2.4
// rather than 3.x because docker-compose 1.x honours mem_limit and
// depends_on conditions there without swarm mode.
type composeFile struct {
	Version  string              `yaml:"version"`
	Services map[string]service  `yaml:"services"`
	Networks map[string]network  `yaml:"networks"`
	Volumes  map[string]struct{} `yaml:"volumes"`
}

type service struct {
	ContainerName string                `yaml:"container_name"`
	Image         string                `yaml:"image"`
	Command       []string              `yaml:"command,omitempty"`
	Environment   []string              `yaml:"environment,omitempty"`
	Volumes       []string              `yaml:"volumes,omitempty"`
	Tmpfs         []string              `yaml:"tmpfs,omitempty"`
	Ports         []string              `yaml:"ports,omitempty"`
	Networks      map[string]attachment `yaml:"networks"`
	DependsOn     map[string]dependency `yaml:"depends_on,omitempty"`
	Healthcheck   *healthcheck          `yaml:"healthcheck,omitempty"`
	Init          bool                  `yaml:"init,omitempty"`
	MemLimit      string                `yaml:"mem_limit,omitempty"`
	MemswapLimit  string                `yaml:"memswap_limit,omitempty"`
	Restart       string                `yaml:"restart,omitempty"`
	Labels        map[string]string     `yaml:"labels"`
}

type attachment struct {
	Aliases []string `yaml:"aliases,omitempty"`
}

type dependency struct {
	Condition string `yaml:"condition"`
}

type healthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

type network struct {
	Internal bool              `yaml:"internal,omitempty"`
	IPAM     *ipam             `yaml:"ipam,omitempty"`
	Labels   map[string]string `yaml:"labels,omitempty"`
}

type ipam struct {
	Config []ipamConfig `yaml:"config"`
}

type ipamConfig struct {
	Subnet  string `yaml:"subnet"`
	Gateway string `yaml:"gateway"`
}

// esc escapes '$' for docker-compose, which interpolates $VAR in the
// file; "$$" is a literal '$'.
func esc(s string) string { return strings.ReplaceAll(s, "$", "$$") }

// build returns the compose file for o, given the rendered nginx config.
// Secret files are referenced relative to the compose file's directory.
func build(o options, nginxConf []byte) (composeFile, error) {
	sum := sha256.Sum256(nginxConf)
	plan, err := tenantSubnets(gen.TenantNames(o.Tenants), o.Taken)
	if err != nil {
		return composeFile{}, err
	}
	c := composeFile{
		Version:  "2.4",
		Services: map[string]service{},
		Networks: map[string]network{edgeNetwork: {}},
		Volumes:  map[string]struct{}{},
	}
	port := appPorts(o)
	for _, t := range gen.TenantNames(o.Tenants) {
		name := func(part string) string { return o.Project + "-" + t + "-" + part }
		secret := func(file, target string) string { return "./secrets/" + t + "-" + file + ":" + target + ":ro" }
		labels := func(role string) map[string]string { return contract.Labels(o.Project, t, role) }
		// Memory plus swap equal to memory: no swap, as the program sets.
		appMemory := strconv.Itoa(spec.DefaultAppMemoryMB) + "m"
		dbMemory := strconv.Itoa(spec.DefaultDBMemoryMB) + "m"
		// Internal, in the tenant's planned subnet with the gateway the
		// program gives it, and labelled as the program labels it.
		c.Networks[t] = network{
			Internal: true,
			IPAM: &ipam{Config: []ipamConfig{{
				Subnet: plan[t].String(), Gateway: subnets.Gateway(plan[t]).String(),
			}}},
			Labels: map[string]string{contract.LabelTenant: t, contract.LabelSecrets: contract.SecretsDerived},
		}
		c.Volumes[t+"-pgdata"] = struct{}{}
		c.Services[t+"-db"] = service{
			ContainerName: name("db"),
			Image:         o.PostgresImage,
			Environment:   contract.DatabaseEnv(),
			Volumes:       []string{t + "-pgdata:" + contract.PGMount, secret("db-password", contract.DBPasswordFile)},
			Networks:      map[string]attachment{t: {Aliases: []string{contract.DBAlias}}},
			// The program's check, less its password sync: the readiness
			// test over TCP. "$$" is compose's literal '$'.
			Healthcheck: &healthcheck{
				Test:     []string{"CMD-SHELL", esc(contract.DatabaseReadyCheck)},
				Interval: o.interval("2s"), Timeout: "10s", Retries: 3, StartPeriod: "2m",
			},
			// Not PID 1: see the init comment in tenants/database.go.
			Init:         true,
			MemLimit:     dbMemory,
			MemswapLimit: dbMemory,
			Restart:      "unless-stopped",
			Labels:       labels("db"),
		}
		app := service{
			ContainerName: name("app"),
			Image:         o.AppImage,
			Command:       contract.AppCommand,
			Environment:   contract.AppEnv(t, spec.Tenant{Name: t}.ServerNames(spec.DefaultDomain), port[t]),
			Volumes:       []string{secret("database-url", contract.DatabaseURLFile)},
			Networks:      map[string]attachment{t: {}, edgeNetwork: {Aliases: []string{t}}},
			DependsOn: map[string]dependency{
				t + "-migrate": {Condition: "service_completed_successfully"},
			},
			Healthcheck: &healthcheck{
				Test:     contract.AppHealthCommand,
				Interval: o.interval("3s"), Timeout: "3s", Retries: 3, StartPeriod: "30s",
			},
			Init:         true,
			MemLimit:     appMemory,
			MemswapLimit: appMemory,
			Restart:      "unless-stopped",
			Labels:       labels("app"),
		}
		if o.Migrations == spec.MigrationsApp {
			// The app migrates as it starts: no migrate service.
			app.Command = contract.MigratingAppCommand
			app.Environment = contract.MigratingAppEnv(t, spec.Tenant{Name: t}.ServerNames(spec.DefaultDomain), port[t], spec.DefaultAdminUser)
			app.Volumes = append(app.Volumes, secret("admin-password", contract.AdminPasswordFile))
			app.DependsOn = map[string]dependency{t + "-db": {Condition: "service_healthy"}}
			c.Services[t+"-app"] = app
			continue
		}
		c.Services[t+"-app"] = app
		c.Services[t+"-migrate"] = service{
			ContainerName: name("migrate"),
			Image:         o.AppImage,
			Command:       contract.MigrationCommand,
			Environment:   contract.MigrationEnv(t, spec.DefaultAdminUser),
			Volumes:       []string{secret("database-url", contract.DatabaseURLFile), secret("admin-password", contract.AdminPasswordFile)},
			Networks:      map[string]attachment{t: {}},
			DependsOn:     map[string]dependency{t + "-db": {Condition: "service_healthy"}},
			MemLimit:      appMemory,
			MemswapLimit:  appMemory,
			Labels:        labels("migrate"),
		}
	}
	c.Services["nginx"] = service{
		ContainerName: o.Project + "-router",
		Image:         o.NginxImage,
		// The tmpfs hides the image's default.conf, as the router's config
		// volume does: unknown hosts get polls.conf's 404, not a welcome page.
		Tmpfs:    []string{contract.RouterConfDir},
		Volumes:  []string{"./nginx.conf:" + contract.RouterConfDir + "/polls.conf:ro"},
		Ports:    []string{strconv.Itoa(o.Port) + ":80"},
		Networks: map[string]attachment{edgeNetwork: {}},
		Restart:  "unless-stopped",
		// A new config changes this label, so `docker-compose up -d`
		// recreates nginx to load it: compose's way of adding a tenant.
		Labels: map[string]string{
			"polls.stack": o.Project, "polls.role": "router",
			"polls.conf-sha256": hex.EncodeToString(sum[:]),
		},
	}
	return c, nil
}

// appPorts are the tenants' app ports as the program plans them on a fresh
// engine (package ports).
func appPorts(o options) map[string]int {
	plan, err := ports.Plan(gen.TenantNames(o.Tenants), nil)
	if err != nil {
		panic(err) // o.check bounds the tenants far below the range
	}
	return plan
}

// renderNginx renders the router config exactly as the router component
// does for the default domain and no TLS.
func renderNginx(o options) ([]byte, error) {
	var servers []nginx.Server
	port := appPorts(o)
	for _, t := range gen.TenantNames(o.Tenants) {
		servers = append(servers, nginx.Server{
			Name: t, Hosts: spec.Tenant{Name: t}.ServerNames(spec.DefaultDomain), Upstream: contract.Upstream(t, port[t]),
		})
	}
	return gen.RenderRouter(servers)
}

// write writes the compose file, nginx config and any missing secrets into
// dir and returns the paths it wrote.
func write(dir string, o options) ([]string, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	secrets := filepath.Join(dir, "secrets")
	// The directory keeps the passwords private on the host; the files are
	// world-readable because the app runs as a non-root user in the
	// container, where it reads the bind-mounted file directly.
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", secrets, err)
	}
	var written []string
	// The files are bind-mounted into containers that do not run as their
	// owner: readable by all (0644), as in the directory only the benchmark
	// uses.
	for _, t := range gen.TenantNames(o.Tenants) {
		dbPassword, err := gen.EnsureSecret(filepath.Join(secrets, t+"-db-password"), 32, 0o644)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: database password: %w", t, err)
		}
		if _, err := gen.EnsureSecret(filepath.Join(secrets, t+"-admin-password"), 24, 0o644); err != nil {
			return nil, fmt.Errorf("tenant %s: admin password: %w", t, err)
		}
		if err := os.WriteFile(filepath.Join(secrets, t+"-database-url"), []byte(contract.DatabaseURL(dbPassword)), 0o644); err != nil {
			return nil, fmt.Errorf("tenant %s: database url: %w", t, err)
		}
	}
	written = append(written, secrets+"/")

	conf, err := renderNginx(o)
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		return nil, fmt.Errorf("write nginx config: %w", err)
	}
	var body bytes.Buffer
	fmt.Fprintf(&body, "# Generated by tools/composegen for %d tenants: the compose equivalent of the\n# Pulumi stack. Run: docker-compose -p %s -f docker-compose.yml up -d\n", o.Tenants, o.Project)
	c, err := build(o, conf)
	if err != nil {
		return nil, err
	}
	enc := yaml.NewEncoder(&body)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("marshal compose file: %w", err)
	}
	composePath := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(composePath, body.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("write compose file: %w", err)
	}
	return append(written, confPath, composePath), nil
}
