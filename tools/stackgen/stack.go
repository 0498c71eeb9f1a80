package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/placement"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/tools/internal/gen"
)

// edgeNetwork names the network the router and every app share, as the
// program's edge network is named after it.
const edgeNetwork = "edge"

var stackName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,40}$`)

// maxTenants bounds -n.
const maxTenants = 200

// options is what stackgen generates.
type options struct {
	Tenants int
	Port    int
	// Project is the stack's name (docker stack deploy's namespace) and
	// the value of the polls.stack labels.
	Project       string
	AppImage      string
	PostgresImage string
	NginxImage    string
	// Nodes are the hostnames of the cluster's nodes, where databases go.
	Nodes []string
	// Migrations is polls:migrations: spec.MigrationsContainer (a migrate
	// service per tenant) or spec.MigrationsApp (each app task migrates as
	// it starts, with the admin password as one more secret).
	Migrations string
}

func defaultOptions() options {
	return options{
		Tenants:       2,
		Port:          spec.DefaultHTTPPort,
		Project:       "polls-stack",
		AppImage:      "polls-bench-app:latest",
		PostgresImage: "polls-local/postgres:15",
		NginxImage:    "polls-local/nginx:1",
		Migrations:    spec.DefaultMigrations,
	}
}

func (o options) check() error {
	var errs []error
	if err := gen.CheckMigrations(o.Migrations); err != nil {
		errs = append(errs, err)
	}
	if o.Tenants < 1 || o.Tenants > maxTenants {
		errs = append(errs, fmt.Errorf("-n %d: want 1 to %d tenants", o.Tenants, maxTenants))
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("-port %d: want 1 to 65535", o.Port))
	}
	if !stackName.MatchString(o.Project) {
		errs = append(errs, fmt.Errorf("-project %q: use lower-case letters, digits, '_' and '-'", o.Project))
	}
	if len(o.Nodes) == 0 {
		errs = append(errs, errors.New("-nodes: name at least one node (the HOSTNAME column of `docker node ls`)"))
	}
	return errors.Join(errs...)
}

// defaultStack is the stack config the program has when none is set.
var defaultStack = spec.Stack{
	Domain: spec.DefaultDomain, AdminUser: spec.DefaultAdminUser,
	AppMemoryMB: spec.DefaultAppMemoryMB, DBMemoryMB: spec.DefaultDBMemoryMB,
}

// databaseNodes places each tenant's database as the program places new
// tenants on an empty cluster (package placement): the least loaded node,
// the first hostname on a tie, so t01, t02, ... alternate over two nodes.
func databaseNodes(o options) (map[string]string, error) {
	var ts []placement.Tenant
	for _, t := range gen.TenantNames(o.Tenants) {
		ts = append(ts, placement.Tenant{Name: t})
	}
	var nodes []placement.Node
	for _, n := range o.Nodes {
		nodes = append(nodes, placement.Node{Hostname: n, Available: true})
	}
	plan, _, err := placement.Plan(ts, nil, nil, nodes)
	return plan, err
}

// stackFile is the subset of the compose file format 3.8 that
// `docker stack deploy` reads and the stack needs.
type stackFile struct {
	Version  string                `yaml:"version"`
	Services map[string]service    `yaml:"services"`
	Networks map[string]network    `yaml:"networks"`
	Volumes  map[string]volume     `yaml:"volumes"`
	Secrets  map[string]fileObject `yaml:"secrets"`
	Configs  map[string]fileObject `yaml:"configs"`
}

type service struct {
	Image           string                `yaml:"image"`
	Command         []string              `yaml:"command,omitempty"`
	Environment     []string              `yaml:"environment,omitempty"`
	Secrets         []fileRef             `yaml:"secrets,omitempty"`
	Configs         []fileRef             `yaml:"configs,omitempty"`
	Volumes         []mount               `yaml:"volumes,omitempty"`
	Ports           []port                `yaml:"ports,omitempty"`
	Networks        map[string]attachment `yaml:"networks"`
	Healthcheck     *healthcheck          `yaml:"healthcheck,omitempty"`
	StopSignal      string                `yaml:"stop_signal,omitempty"`
	StopGracePeriod string                `yaml:"stop_grace_period,omitempty"`
	Deploy          deploy                `yaml:"deploy"`
}

type fileRef struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
}

type mount struct {
	Type   string `yaml:"type"`
	Source string `yaml:"source"`
	Target string `yaml:"target"`
}

type port struct {
	Target    int    `yaml:"target"`
	Published int    `yaml:"published"`
	Protocol  string `yaml:"protocol"`
	Mode      string `yaml:"mode"`
}

type attachment struct {
	Aliases []string `yaml:"aliases,omitempty"`
}

type healthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

type deploy struct {
	Mode           string            `yaml:"mode"`
	Replicas       int               `yaml:"replicas"`
	EndpointMode   string            `yaml:"endpoint_mode"`
	Labels         map[string]string `yaml:"labels"`
	Placement      placementSpec     `yaml:"placement,omitempty"`
	Resources      *resources        `yaml:"resources,omitempty"`
	RestartPolicy  *restartPolicy    `yaml:"restart_policy,omitempty"`
	UpdateConfig   *updateConfig     `yaml:"update_config,omitempty"`
	RollbackConfig *updateConfig     `yaml:"rollback_config,omitempty"`
}

type placementSpec struct {
	Constraints []string     `yaml:"constraints,omitempty"`
	Preferences []preference `yaml:"preferences,omitempty"`
}

type preference struct {
	Spread string `yaml:"spread"`
}

type resources struct {
	Limits limits `yaml:"limits"`
}

type limits struct {
	Memory string `yaml:"memory"`
}

type restartPolicy struct {
	Condition string `yaml:"condition"`
}

type updateConfig struct {
	// Parallelism is a pointer: 0 (all at once) differs from unset (1).
	Parallelism   *int   `yaml:"parallelism,omitempty"`
	Delay         string `yaml:"delay,omitempty"`
	FailureAction string `yaml:"failure_action,omitempty"`
	Monitor       string `yaml:"monitor,omitempty"`
	Order         string `yaml:"order,omitempty"`
}

type network struct {
	Driver     string            `yaml:"driver"`
	Internal   bool              `yaml:"internal,omitempty"`
	Attachable bool              `yaml:"attachable"`
	Labels     map[string]string `yaml:"labels,omitempty"`
}

type volume struct {
	Labels map[string]string `yaml:"labels"`
}

type fileObject struct {
	File   string            `yaml:"file"`
	Labels map[string]string `yaml:"labels,omitempty"`
}

// esc escapes '$' for docker stack deploy, which interpolates ${VAR} and
// $VAR in the file; "$$" is a literal '$'.
func esc(s string) string { return strings.ReplaceAll(s, "$", "$$") }

func escAll(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = esc(s)
	}
	return out
}

func megabytes(mb int) *resources {
	return &resources{Limits: limits{Memory: strconv.Itoa(mb) + "M"}}
}

//go:fix inline

// secretName is the stack's secret for a tenant's file, e.g.
// t01-database-url; its file is secrets/<secretName>.
func secretName(tenant, file string) string { return tenant + "-" + path.Base(file) }

// build returns the stack file for o. Secret files are referenced
// relative to the stack file's directory.
func build(o options) (stackFile, error) {
	nodes, err := databaseNodes(o)
	if err != nil {
		return stackFile{}, err
	}
	c := stackFile{
		Version:  "3.8",
		Services: map[string]service{},
		// The edge network is an attachable overlay, as the program's.
		Networks: map[string]network{edgeNetwork: {Driver: "overlay", Attachable: true}},
		Volumes:  map[string]volume{},
		Secrets:  map[string]fileObject{},
		Configs:  map[string]fileObject{},
	}
	for _, t := range gen.TenantNames(o.Tenants) {
		tenant := spec.Tenant{Name: t}
		net := t + "-net"
		labels := func(role string, extra ...string) map[string]string {
			l := contract.Labels(o.Project, t, role)
			for i := 0; i+1 < len(extra); i += 2 {
				l[extra[i]] = extra[i+1]
			}
			return l
		}
		secret := func(file string) fileRef {
			name := secretName(t, file)
			c.Secrets[name] = fileObject{
				File:   "./secrets/" + name,
				Labels: map[string]string{"polls.stack": o.Project, "polls.tenant": t},
			}
			return fileRef{Source: name, Target: path.Base(file)}
		}
		// Internal (no way out of the cluster) and attachable, labelled
		// as the program's; Swarm's address pool gives the subnet.
		c.Networks[net] = network{Driver: "overlay", Internal: true, Attachable: true, Labels: map[string]string{"polls.tenant": t}}
		c.Volumes[t+"-pgdata"] = volume{Labels: map[string]string{"polls.tenant": t, "polls.retained": "true"}}

		c.Services[t+"-db"] = service{
			Image:       o.PostgresImage,
			Environment: escAll(contract.DatabaseEnv()),
			Secrets:     []fileRef{secret(contract.DBPasswordFile)},
			Volumes:     []mount{{Type: "volume", Source: t + "-pgdata", Target: contract.PGMount}},
			Networks:    map[string]attachment{net: {Aliases: []string{contract.DBAlias}}},
			Healthcheck: &healthcheck{
				Test:     []string{"CMD-SHELL", esc(contract.DatabaseHealthScript)},
				Interval: "3s", Timeout: "10s", Retries: 5, StartPeriod: "2m",
			},
			// PostgreSQL's fast shutdown, as the program's.
			StopSignal:      "SIGINT",
			StopGracePeriod: "30s",
			Deploy: deploy{
				Mode: "replicated", Replicas: 1, EndpointMode: "dnsrr",
				Labels:       labels("db", "polls.node", nodes[t], contract.LabelSecrets, contract.SecretsDerived),
				Placement:    placementSpec{Constraints: []string{"node.hostname==" + nodes[t]}},
				Resources:    megabytes(defaultStack.DBMemoryMB),
				UpdateConfig: &updateConfig{Order: "stop-first"},
			},
		}
		// The program runs the migration as a container on the manager,
		// gated on a healthy database. A stack file has neither gating nor
		// (with this CLI) replicated-job mode: a one-replica service,
		// restarted until it exits 0 (migrate itself waits up to 30 s for
		// the database), on the manager. With polls:migrations app each
		// app task migrates as it starts, as the program's do.
		hosts := tenant.ServerNames(defaultStack.Domain)
		command, env := contract.AppCommand, contract.AppEnv(t, hosts, contract.AppPort)
		appSecrets := []fileRef{secret(contract.DatabaseURLFile)}
		if o.Migrations == spec.MigrationsApp {
			command, env = contract.MigratingAppCommand, contract.MigratingAppEnv(t, hosts, contract.AppPort, defaultStack.AdminUser)
			appSecrets = append(appSecrets, secret(contract.AdminPasswordFile))
		} else {
			c.Services[t+"-migrate"] = service{
				Image:       o.AppImage,
				Command:     escAll(contract.MigrationCommand),
				Environment: escAll(contract.MigrationEnv(t, defaultStack.AdminUser)),
				Secrets:     []fileRef{secret(contract.DatabaseURLFile), secret(contract.AdminPasswordFile)},
				Networks:    map[string]attachment{net: {}},
				Deploy: deploy{
					Mode: "replicated", Replicas: 1, EndpointMode: "dnsrr",
					Labels:        labels("migrate"),
					Placement:     placementSpec{Constraints: []string{"node.role==manager"}},
					Resources:     megabytes(defaultStack.AppMemory(tenant)),
					RestartPolicy: &restartPolicy{Condition: "on-failure"},
				},
			}
		}
		c.Services[t+"-app"] = service{
			Image:       o.AppImage,
			Command:     escAll(command),
			Environment: escAll(env),
			Secrets:     appSecrets,
			Networks:    map[string]attachment{net: {}, edgeNetwork: {}},
			Healthcheck: &healthcheck{
				Test:     escAll(contract.AppHealthCommand),
				Interval: "5s", Timeout: "3s", Retries: 3, StartPeriod: "30s",
			},
			StopGracePeriod: "10s",
			Deploy: deploy{
				Mode: "replicated", Replicas: defaultStack.AppReplicas(tenant), EndpointMode: "dnsrr",
				Labels:    labels("app"),
				Placement: placementSpec{Preferences: []preference{{Spread: "node.id"}}},
				Resources: megabytes(defaultStack.AppMemory(tenant)),
				UpdateConfig: &updateConfig{
					Order: "start-first", Parallelism: new(1), Delay: "6s",
					FailureAction: "rollback", Monitor: "5s",
				},
				RollbackConfig: &updateConfig{Order: "start-first", Parallelism: new(0), FailureAction: "pause"},
			},
		}
	}
	c.Configs["nginx-conf"] = fileObject{File: "./nginx.conf", Labels: map[string]string{"polls.stack": o.Project}}
	c.Services["router"] = service{
		Image:   o.NginxImage,
		Command: []string{"nginx", "-g", "daemon off;"},
		// In place of the image's default.conf (a welcome page), as the
		// router's config volume hides it: unknown hosts get 404.
		Configs:  []fileRef{{Source: "nginx-conf", Target: contract.RouterConfDir + "/default.conf"}},
		Ports:    []port{{Target: 80, Published: o.Port, Protocol: "tcp", Mode: "host"}},
		Networks: map[string]attachment{edgeNetwork: {}},
		Deploy: deploy{
			Mode: "replicated", Replicas: 1, EndpointMode: "dnsrr",
			Labels:    map[string]string{"polls.stack": o.Project, "polls.role": "router"},
			Placement: placementSpec{Constraints: []string{"node.role==manager"}},
		},
	}
	return c, nil
}

// renderNginx renders the router config with the nginx package, one server
// per tenant sending its host to the app service's name on the edge
// network, as the router's route does on Swarm (contract.Upstream of the
// service's name; in a stack, the service's short name resolves there).
func renderNginx(o options) ([]byte, error) {
	var servers []nginx.Server
	for _, t := range gen.TenantNames(o.Tenants) {
		servers = append(servers, nginx.Server{
			Name: t, Hosts: spec.Tenant{Name: t}.ServerNames(defaultStack.Domain), Upstream: contract.Upstream(t+"-app", contract.AppPort),
		})
	}
	return gen.RenderRouter(servers)
}

// write writes the stack file, nginx config and any missing secrets into
// dir and returns the paths it wrote.
func write(dir string, o options) ([]string, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", secrets, err)
	}
	// docker stack deploy reads the files into Docker secrets: owner only.
	for _, t := range gen.TenantNames(o.Tenants) {
		dbPassword, err := gen.EnsureSecret(filepath.Join(secrets, secretName(t, contract.DBPasswordFile)), 32, 0o600)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: database password: %w", t, err)
		}
		if _, err := gen.EnsureSecret(filepath.Join(secrets, secretName(t, contract.AdminPasswordFile)), 24, 0o600); err != nil {
			return nil, fmt.Errorf("tenant %s: admin password: %w", t, err)
		}
		if err := os.WriteFile(filepath.Join(secrets, secretName(t, contract.DatabaseURLFile)), []byte(contract.DatabaseURL(dbPassword)), 0o600); err != nil {
			return nil, fmt.Errorf("tenant %s: database url: %w", t, err)
		}
	}
	conf, err := renderNginx(o)
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		return nil, fmt.Errorf("write nginx config: %w", err)
	}
	c, err := build(o)
	if err != nil {
		return nil, err
	}
	var body bytes.Buffer
	fmt.Fprintf(&body, "# Generated by tools/stackgen for %d tenants: the Swarm stack equivalent of the\n# Pulumi stack on polls:platform swarm. Run from this directory:\n#   docker stack deploy --with-registry-auth -c docker-stack.yml %s\n", o.Tenants, o.Project)
	enc := yaml.NewEncoder(&body)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("marshal stack file: %w", err)
	}
	stackPath := filepath.Join(dir, "docker-stack.yml")
	if err := os.WriteFile(stackPath, body.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("write stack file: %w", err)
	}
	return []string{secrets + "/", confPath, stackPath}, nil
}
