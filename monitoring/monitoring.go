// Package monitoring declares the stack's metrics and alerts
// (polls:monitoring): the metrics exporter, and with polls:monitoring true a
// Prometheus that scrapes it and every tenant's backup agent, and an
// Alertmanager that sends the alerts to the webhook of the stack config.
//
// Everything runs as containers on the engine the program talks to (on
// Swarm, the manager, like the router and the backup agents), on a
// monitoring network of its own. No tenant's app or database is on it: the
// exporter reads the router's per-request lines from a volume only the two
// of them mount, and the engine's view of every tenant through the
// engine's socket; Prometheus reaches the backup agents on the backup
// network, which holds no app or database either. Only Prometheus' UI is
// published, on the Docker host's loopback.
//
// Prometheus' and Alertmanager's configuration is rendered from the stack
// config (package prometheus) and uploaded into their containers: a change
// of it replaces them, their data kept on volumes. The one part that
// changes with the tenants, the list of backup agents to scrape, is
// written by a short-lived installer into a volume Prometheus watches, so
// adding or removing a tenant restarts nothing.
package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/prometheus"
	"github.com/polls-tenants/polls/spec"
)

// Type is the component's type token.
const Type = "polls:index:Monitoring"

// Engine is what the component asks the Docker engine itself.
type Engine interface {
	// Wait returns once container id is healthy, and fails at once when it
	// exits or turns unhealthy, or after within.
	Wait(ctx context.Context, id string, within time.Duration) error
}

// Args configures the stack's monitoring.
type Args struct {
	// Stack supplies polls:monitoring's settings, the platform and the
	// backups' schedule.
	Stack spec.Stack
	// Prefix starts every Docker object name, e.g. "polls-dev".
	Prefix string
	// Tenants are every tenant's name.
	Tenants []string
	// AgentImage runs the exporter and the installer (polls-agent).
	AgentImage pulumi.StringInput
	// RouterMetrics is the router's metrics volume, where the exporter
	// listens for its lines.
	RouterMetrics pulumi.StringInput
	// ACMEState is the certificate companion's state volume, read by the
	// exporter for the certificates' expiry; nil without ACME.
	ACMEState pulumi.StringInput
	// BackupNetwork is where the backup agents are; nil without backups.
	BackupNetwork pulumi.StringInput
	// Engine watches the containers come up.
	Engine Engine
}

// Monitoring is the component resource for the stack's monitoring.
type Monitoring struct {
	pulumi.ResourceState

	// URL is Prometheus' UI on the Docker host, once it is ready; "" with
	// the exporters only.
	URL pulumi.StringOutput `pulumi:"url"`
	// Targets are what to scrape, as file-based service discovery
	// groups: "metrics" the exporter, "backup" the backup agents.
	Targets pulumi.MapOutput `pulumi:"targets"`
	// Exporter, Prometheus and Alertmanager are their containers (the
	// last two nil with the exporters only); Installer writes the backup
	// agents' list.
	Exporter     *docker.Container `pulumi:"-"`
	Prometheus   *docker.Container `pulumi:"-"`
	Alertmanager *docker.Container `pulumi:"-"`
	Installer    *docker.Container `pulumi:"-"`
}

// Memory limits, MiB: the exporter keeps a few series per tenant;
// Prometheus holds about fifty series per tenant in memory, about 2 KiB
// each, and its queries' working set; Alertmanager holds the alerts.
const (
	exporterMemoryMB     = 64
	prometheusMemoryMB   = 1024
	alertmanagerMemoryMB = 128
)

// How long each may take to become healthy.
const readyWithin = 2 * time.Minute

// retention is how long Prometheus keeps its samples: the latency alert
// compares with the day before.
const retention = "15d"

// dockerSocket is the engine's socket on the Docker host, as most hosts
// have it.
const dockerSocket = "/var/run/docker.sock"

// New declares the monitoring network, the exporter and, with
// polls:monitoring true, Prometheus, Alertmanager and the installer of the
// backup agents' list.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Monitoring, error) {
	m := &Monitoring{}
	if err := ctx.RegisterComponentResource(Type, name, m, opts...); err != nil {
		return nil, fmt.Errorf("monitoring: register component: %w", err)
	}
	parent := pulumi.Parent(m)
	s, prefix := args.Stack, args.Prefix
	cfg := Config(s, prefix, args.Tenants)

	network, err := docker.NewNetwork(ctx, name, &docker.NetworkArgs{
		Name: pulumi.String(prefix + "-monitoring"),
		// Not internal: Alertmanager reaches the webhook through it.
		Labels: docker.NetworkLabelArray{docker.NetworkLabelArgs{Label: pulumi.String(contract.LabelStack), Value: pulumi.String(prefix)}},
	}, parent, platform.Named)
	if err != nil {
		return nil, fmt.Errorf("monitoring: network: %w", err)
	}
	onNetwork := func(alias string) docker.ContainerNetworksAdvancedArgs {
		return docker.ContainerNetworksAdvancedArgs{Name: network.Name, Aliases: pulumi.StringArray{pulumi.String(alias)}}
	}

	command := []string{"metrics", "serve", "--stack", prefix, "--platform", s.Platform,
		"--listen", ":" + strconv.Itoa(contract.MetricsPort), "--router-socket", contract.RouterMetricsSocket, "--engine", "unix://" + dockerSocket}
	exporterMounts := docker.ContainerMountArray{docker.ContainerMountArgs{
		Type: pulumi.String("volume"), Source: args.RouterMetrics, Target: pulumi.String(contract.RouterMetricsDir),
	}}
	if args.ACMEState != nil {
		// Read-only, and read for status.json alone: the exporter changes
		// nothing of the companion's, and serves nothing but the metrics
		// derived from it (expiry, validity, failing since).
		command = append(command, "--acme-state", contract.ACMEStateDir)
		exporterMounts = append(exporterMounts, docker.ContainerMountArgs{
			Type: pulumi.String("volume"), Source: args.ACMEState, Target: pulumi.String(contract.ACMEStateDir), ReadOnly: pulumi.Bool(true),
		})
	}
	m.Exporter, err = docker.NewContainer(ctx, "metrics", &docker.ContainerArgs{
		Name:    pulumi.String(prefix + "-metrics"),
		Image:   args.AgentImage,
		Command: pulumi.ToStringArray(command),
		// Root: it creates its socket in the router's volume, and reads
		// the engine's socket, which is root's.
		User:   pulumi.String("0:0"),
		Mounts: exporterMounts,
		// The engine's socket gives whoever holds it the whole engine
		// (Docker has no read-only API, and :ro only keeps the socket
		// file from being replaced): the exporter's code sends GETs only,
		// and it is on no network but the monitoring one.
		Volumes: docker.ContainerVolumeArray{docker.ContainerVolumeArgs{
			HostPath: pulumi.String(dockerSocket), ContainerPath: pulumi.String(dockerSocket), ReadOnly: pulumi.Bool(true),
		}},
		// A burst of requests waits in the socket's queue instead of being
		// dropped by nginx, which never waits (the default queue holds 10).
		Sysctls:          pulumi.StringMap{"net.unix.max_dgram_qlen": pulumi.String("1024")},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{onNetwork(contract.MetricsAlias)},
		Healthcheck: docker.ContainerHealthcheckArgs{
			Tests:    pulumi.ToStringArray([]string{"CMD", contract.AgentBinary, "metrics", "check"}),
			Interval: pulumi.String("30s"), Timeout: pulumi.String("5s"), Retries: pulumi.Int(3), StartPeriod: pulumi.String("30s"),
		},
		Restart:    pulumi.String("unless-stopped"),
		Memory:     platform.Memory(exporterMemoryMB),
		MemorySwap: platform.Memory(exporterMemoryMB),
		Labels:     labels(prefix, "metrics"),
	}, parent, platform.Named, pulumi.ReplaceOnChanges([]string{"healthcheck"}))
	if err != nil {
		return nil, fmt.Errorf("monitoring: metrics exporter: %w", err)
	}
	exporterReady := healthy(ctx, args.Engine, "monitoring: metrics exporter", m.Exporter)

	m.Targets = pulumi.All(exporterReady).ApplyT(func([]any) map[string]any {
		return map[string]any{"metrics": groups(prometheus.MetricsGroups(cfg)), "backup": groups(prometheus.AgentGroups(cfg))}
	}).(pulumi.MapOutput)
	m.URL = exporterReady.ApplyT(func(string) string { return "" }).(pulumi.StringOutput)
	if s.Monitoring.Prometheus {
		if err := m.declarePrometheus(ctx, args, cfg, onNetwork, parent); err != nil {
			return nil, err
		}
	}
	if err := ctx.RegisterResourceOutputs(m, pulumi.Map{"url": m.URL, "targets": m.Targets}); err != nil {
		return nil, fmt.Errorf("monitoring: register outputs: %w", err)
	}
	return m, nil
}

// declarePrometheus declares Prometheus, Alertmanager and the backup
// agents' list.
func (m *Monitoring) declarePrometheus(ctx *pulumi.Context, args Args, cfg prometheus.Config, onNetwork func(string) docker.ContainerNetworksAdvancedArgs, parent pulumi.ResourceOption) error {
	s, prefix := args.Stack, args.Prefix
	files, err := prometheus.Render(cfg)
	if err != nil {
		return fmt.Errorf("monitoring: %w", err)
	}
	volume := func(logical string) (*docker.Volume, error) {
		v, err := docker.NewVolume(ctx, logical, &docker.VolumeArgs{
			Name:   pulumi.String(prefix + "-" + logical),
			Labels: docker.VolumeLabelArray{docker.VolumeLabelArgs{Label: pulumi.String(contract.LabelStack), Value: pulumi.String(prefix)}},
		}, parent)
		if err != nil {
			return nil, fmt.Errorf("monitoring: volume %s: %w", logical, err)
		}
		return v, nil
	}

	data, err := volume("prometheus-data")
	if err != nil {
		return err
	}
	mounts := docker.ContainerMountArray{docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: data.Name, Target: pulumi.String(contract.PrometheusDataDir)}}
	networks := docker.ContainerNetworksAdvancedArray{onNetwork(contract.PrometheusAlias)}
	if args.BackupNetwork != nil {
		targets, err := volume("prometheus-targets")
		if err != nil {
			return err
		}
		if m.Installer, err = installTargets(ctx, args, cfg, targets, parent); err != nil {
			return err
		}
		mounts = append(mounts, docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: targets.Name, Target: pulumi.String(contract.PrometheusTargetsDir), ReadOnly: pulumi.Bool(true)})
		networks = append(networks, docker.ContainerNetworksAdvancedArgs{Name: args.BackupNetwork})
	}
	m.Prometheus, err = docker.NewContainer(ctx, "prometheus", &docker.ContainerArgs{
		Name:  pulumi.String(prefix + "-prometheus"),
		Image: pulumi.String(s.Monitoring.PrometheusImage),
		Command: pulumi.ToStringArray([]string{
			"--config.file=" + contract.PrometheusConfigFile, "--storage.tsdb.path=" + contract.PrometheusDataDir,
			"--storage.tsdb.retention.time=" + retention, "--web.listen-address=:" + strconv.Itoa(contract.PrometheusPort),
		}),
		Uploads: docker.ContainerUploadArray{
			docker.ContainerUploadArgs{File: pulumi.String(contract.PrometheusConfigFile), Content: pulumi.String(string(files.Prometheus))},
			docker.ContainerUploadArgs{File: pulumi.String(contract.PrometheusRulesFile), Content: pulumi.String(string(files.Rules))},
		},
		Mounts: mounts,
		// On the host's loopback only: nothing outside the host reaches it.
		Ports: docker.ContainerPortArray{docker.ContainerPortArgs{
			Internal: pulumi.Int(contract.PrometheusPort), External: pulumi.Int(s.Monitoring.Port), Ip: pulumi.String("127.0.0.1"),
		}},
		NetworksAdvanced: networks,
		Healthcheck:      ready(contract.PrometheusPort),
		Restart:          pulumi.String("unless-stopped"),
		// Time to write its head block to the volume.
		DestroyGraceSeconds: pulumi.Int(30),
		Memory:              platform.Memory(prometheusMemoryMB),
		MemorySwap:          platform.Memory(prometheusMemoryMB),
		Labels:              labels(prefix, "prometheus"),
	}, parent, platform.Named, pulumi.ReplaceOnChanges([]string{"healthcheck"}))
	if err != nil {
		return fmt.Errorf("monitoring: prometheus: %w", err)
	}

	amData, err := volume("alertmanager-data")
	if err != nil {
		return err
	}
	amUploads := docker.ContainerUploadArray{
		docker.ContainerUploadArgs{File: pulumi.String(contract.AlertmanagerConfigFile), Content: pulumi.String(string(files.Alertmanager))},
	}
	if w := s.Monitoring.Webhook; w != nil && w.Token != "" {
		amUploads = append(amUploads, docker.ContainerUploadArgs{
			File: pulumi.String(contract.AlertWebhookTokenFile), Content: pulumi.ToSecret(pulumi.String(w.Token)).(pulumi.StringOutput),
		})
	}
	m.Alertmanager, err = docker.NewContainer(ctx, "alertmanager", &docker.ContainerArgs{
		Name:  pulumi.String(prefix + "-alertmanager"),
		Image: pulumi.String(s.Monitoring.AlertmanagerImage),
		Command: pulumi.ToStringArray([]string{
			"--config.file=" + contract.AlertmanagerConfigFile, "--storage.path=" + contract.AlertmanagerDataDir,
			"--web.listen-address=:" + strconv.Itoa(contract.AlertmanagerPort),
			// One Alertmanager: no cluster to gossip with.
			"--cluster.listen-address=",
		}),
		Uploads:          amUploads,
		Mounts:           docker.ContainerMountArray{docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: amData.Name, Target: pulumi.String(contract.AlertmanagerDataDir)}},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{onNetwork(contract.AlertmanagerAlias)},
		Healthcheck:      ready(contract.AlertmanagerPort),
		Restart:          pulumi.String("unless-stopped"),
		Memory:           platform.Memory(alertmanagerMemoryMB),
		MemorySwap:       platform.Memory(alertmanagerMemoryMB),
		Labels:           labels(prefix, "alertmanager"),
	}, parent, platform.Named, pulumi.ReplaceOnChanges([]string{"healthcheck"}))
	if err != nil {
		return fmt.Errorf("monitoring: alertmanager: %w", err)
	}

	promReady := healthy(ctx, args.Engine, "monitoring: prometheus", m.Prometheus)
	amReady := healthy(ctx, args.Engine, "monitoring: alertmanager", m.Alertmanager)
	gates := []any{m.URL, promReady, amReady}
	if m.Installer != nil {
		gates = append(gates, platform.Succeeded(m.Installer, "monitoring: the installer of the backup agents' list", "installed"))
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", s.Monitoring.Port)
	m.URL = pulumi.All(gates...).ApplyT(func([]any) string { return url }).(pulumi.StringOutput)
	return nil
}

// installScript puts the staged list in place atomically: Prometheus
// watches the directory and reads the new file at once.
const installScript = `f=` + prometheus.TargetsFile + `
cp "/polls/next/$f" "/targets/.$f.new"
chmod 644 "/targets/.$f.new"
mv "/targets/.$f.new" "/targets/$f"
echo "installed the backup agents' list: $(grep -c '"targets"' "/targets/$f") tenants"`

// installTargets declares the one-shot container that writes the backup
// agents' list into Prometheus' targets volume: replaced, and so run
// again, whenever the tenants change.
func installTargets(ctx *pulumi.Context, args Args, cfg prometheus.Config, targets *docker.Volume, parent pulumi.ResourceOption) (*docker.Container, error) {
	list, err := prometheus.Targets(cfg)
	if err != nil {
		return nil, fmt.Errorf("monitoring: %w", err)
	}
	c, err := docker.NewContainer(ctx, "monitoring-targets", platform.OneShot(&docker.ContainerArgs{
		Name:        pulumi.String(args.Prefix + "-monitoring-targets"),
		Image:       args.AgentImage,
		Entrypoints: pulumi.ToStringArray([]string{"sh", "-ec", installScript}),
		User:        pulumi.String("0:0"),
		Uploads: docker.ContainerUploadArray{docker.ContainerUploadArgs{
			File: pulumi.String("/polls/next/" + prometheus.TargetsFile), Content: pulumi.String(string(list)),
		}},
		Mounts:      docker.ContainerMountArray{docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: targets.Name, Target: pulumi.String("/targets")}},
		NetworkMode: pulumi.String("none"),
		Labels:      labels(args.Prefix, "monitoring-targets"),
	}), parent, platform.Named)
	if err != nil {
		return nil, fmt.Errorf("monitoring: installer of the backup agents' list: %w", err)
	}
	return c, nil
}

// Config is what package prometheus renders the stack's monitoring from.
func Config(s spec.Stack, prefix string, tenants []string) prometheus.Config {
	c := prometheus.Config{
		Stack: prefix, Tenants: tenants,
		Metrics:      contract.MetricsAlias + ":" + strconv.Itoa(contract.MetricsPort),
		Alertmanager: contract.AlertmanagerAlias + ":" + strconv.Itoa(contract.AlertmanagerPort),
		RulesFile:    contract.PrometheusRulesFile, TargetsDir: contract.PrometheusTargetsDir,
	}
	if s.ACME != nil {
		c.Certificates = &prometheus.Certificates{RenewBefore: s.ACME.RenewBefore}
	}
	if s.Backup != nil {
		c.Backups = &prometheus.Backups{
			Agent:    func(t string) string { return contract.AgentName(prefix, t) + ":" + strconv.Itoa(contract.AgentPort) },
			Interval: s.Backup.Interval,
		}
	}
	if m := s.Monitoring; m != nil && m.Webhook != nil {
		c.Webhook = &prometheus.Webhook{URL: m.Webhook.URL}
		if m.Webhook.Token != "" {
			c.Webhook.TokenFile = contract.AlertWebhookTokenFile
		}
	}
	return c
}

// ready is the health check of Prometheus and Alertmanager: their own
// readiness endpoint, fetched with the wget both images have.
func ready(port int) docker.ContainerHealthcheckArgs {
	return docker.ContainerHealthcheckArgs{
		Tests:    pulumi.ToStringArray([]string{"CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:" + strconv.Itoa(port) + "/-/ready"}),
		Interval: pulumi.String("30s"), Timeout: pulumi.String("5s"), Retries: pulumi.Int(3), StartPeriod: pulumi.String("1m0s"),
	}
}

// healthy resolves once container c is healthy (see platform.Gate).
func healthy(ctx *pulumi.Context, engine Engine, what string, c *docker.Container) pulumi.StringOutput {
	return platform.Gate(ctx, what, func(ctx context.Context, id []any) error {
		return engine.Wait(ctx, fmt.Sprint(id[0]), readyWithin)
	}, "healthy", c.ID())
}

func labels(prefix, role string) docker.ContainerLabelArray {
	return docker.ContainerLabelArray{
		docker.ContainerLabelArgs{Label: pulumi.String(contract.LabelStack), Value: pulumi.String(prefix)},
		docker.ContainerLabelArgs{Label: pulumi.String(contract.LabelRole), Value: pulumi.String(role)},
	}
}

// groups turns target groups into plain values for a stack output.
func groups(g []prometheus.TargetGroup) []any {
	b, _ := json.Marshal(g)
	var out []any
	_ = json.Unmarshal(b, &out)
	return out
}
