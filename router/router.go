// Package router declares the one nginx router in front of every tenant.
//
// Almost every docker container argument forces a replacement, and the
// provider replaces delete-first: a router whose config were one of its
// arguments would drop every tenant's requests whenever a tenant is added.
// So the router container's arguments never mention tenants. Its config lives
// on a volume, written by a short-lived installer container that shares the
// router's PID namespace: it puts the files in place, checks the whole
// config with the real `nginx -t`, and sends nginx SIGHUP, which reloads
// gracefully. A config nginx rejects is put back, fails `pulumi up` and never
// goes live.
//
// The config is rendered from the tenant list: the default server and one
// file of every tenant's "route" (its servers), installed by one installer,
// so a cold `pulumi up` reloads nginx once and a tenant costs lines in a
// file, not a container. In `pulumi preview --diff` that file shows as a
// line diff: an added tenant is its server block added, a removed one its
// block removed. A certificate and key of polls:tls are put in place by an
// installer of their own before it, so that the config's uploads hold no
// secret (Pulumi shows an upload list with a secret in it as [secret]).
//
// A route sends requests to a name that never changes, the tenant's app
// name on the edge network, which Docker's DNS resolves to the tenant's
// serving app containers (one host) or healthy tasks (Swarm); the router
// asks again every 5 s. So a release changes no route and the installer is
// not replaced: a new version takes the name once healthy (package
// onehost, swarm), requests in flight finish on the old one, and nginx is
// not reloaded. Adding or removing a tenant replaces the installer, which
// installs the config at once, without waiting for the new tenant: its
// name resolves to nothing, and nginx answers its hosts 502, until its app
// serves. A tenant whose migration or new version fails keeps its old
// version serving.
package router

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/spec"
)

// installScript runs in the config container; see the package comment.
//
//go:embed install.sh
var installScript string

// Type is the component's type token.
const Type = "polls:index:Router"

// stageDir is where the config container receives the new files.
const stageDir = "/polls/next"

// Args configures the router.
type Args struct {
	// Stack supplies ports, TLS and the nginx image.
	Stack spec.Stack
	// Prefix starts every Docker object name, e.g. "polls-dev".
	Prefix string
	// Routes are the tenants to route to.
	Routes []Route
	// EdgeNetwork is the network shared with the tenants' apps.
	EdgeNetwork pulumi.StringInput
	// AgentImage is the image of polls-agent, which runs the certificate
	// companion; used with ACME only.
	AgentImage pulumi.StringInput
	// Engine reads the companion's status; nil skips that.
	Engine Engine
	// RemoteApps says apps run on other machines, which can vanish without
	// closing their connections (Swarm nodes): the router then probes a
	// connection that waits for an answer every second, and gives up on
	// it after two unanswered probes (deadPeerSysctls).
	RemoteApps bool
}

// deadPeerSysctls are the router's TCP keepalive timings with RemoteApps:
// nginx turns keepalive on for its connections to apps
// (proxy_socket_keepalive), and the timings are its network namespace's.
// A request in flight to an app on a node that is lost then fails within
// about 3 s instead of nginx's 60 s read timeout, and nginx passes a GET
// on to another of the app's tasks (proxy_next_upstream), well within a
// client's patience. A live app answers the probes from its kernel, so a
// slow answer is never cut short.
var deadPeerSysctls = map[string]string{
	"net.ipv4.tcp_keepalive_time":   "1",
	"net.ipv4.tcp_keepalive_intvl":  "1",
	"net.ipv4.tcp_keepalive_probes": "2",
}

// Route sends a tenant's host names to its app.
type Route struct {
	// Server is the tenant's name, host names and upstream (host:port of
	// its app on the edge network).
	Server nginx.Server
	// Serving resolves once the tenant's app answers at the upstream: the
	// tenant is routed once the config is installed and Serving resolves.
	Serving pulumi.StringOutput
	// Installed says the tenant existed before this update: with ACME, only
	// a new tenant's Routed waits for its certificates.
	Installed bool
}

// Router is the component resource for the router.
type Router struct {
	pulumi.ResourceState

	// URL is the router's base URL on the Docker host.
	URL pulumi.StringOutput `pulumi:"url"`
	// The outputs below are set by New and carry no pulumi tag: the SDK
	// makes and awaits an output for every tagged one, and two sharing a
	// tag ("-") leave one that never resolves, which hangs the program.

	// Container is the nginx container.
	Container *docker.Container `pulumi:"-"`
	// Config is the container that installed the config.
	Config *docker.Container `pulumi:"-"`
	// Routed maps each tenant to an output that resolves once its route is
	// live, and fails with the reason otherwise. With ACME, a new tenant's
	// also waits (a bounded time) for its certificates, and warns when
	// they fail.
	Routed map[string]pulumi.StringOutput
	// Live maps each tenant to an output that resolves once its route is
	// installed and its app serves: Routed without ACME's wait for
	// certificates.
	Live map[string]pulumi.StringOutput
	// Companion is the certificate companion's container (ACME only).
	Companion *docker.Container `pulumi:"-"`
	// ACMEState is the companion's state volume, whose status.json the
	// metrics exporter reads (ACME only).
	ACMEState pulumi.StringOutput
	// MetricsVolume is the volume nginx sends its per-request lines
	// through, to the metrics exporter (with polls:monitoring only).
	MetricsVolume pulumi.StringOutput
}

// New declares the router: the nginx container and its config, which holds
// one route per tenant.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Router, error) {
	r := &Router{Routed: map[string]pulumi.StringOutput{}, Live: map[string]pulumi.StringOutput{}}
	if err := ctx.RegisterComponentResource(Type, name, r, opts...); err != nil {
		return nil, fmt.Errorf("router: register component: %w", err)
	}
	parent := pulumi.Parent(r)

	servers := make([]nginx.Server, len(args.Routes))
	for i, rt := range args.Routes {
		servers[i] = rt.Server
	}
	files, err := Files(args.Stack, servers, contract.RouterConfDir)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}

	conf, err := docker.NewVolume(ctx, name+"-conf", &docker.VolumeArgs{
		Name: pulumi.String(args.Prefix + "-router-conf"),
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("router: config volume: %w", err)
	}
	mounts := docker.ContainerMountArray{
		docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: conf.Name, Target: pulumi.String(contract.RouterConfDir)},
	}
	routerMounts := mounts
	if args.Stack.Monitoring != nil {
		// Shared with the metrics exporter only. Mounting it replaces the
		// router container once, when monitoring is turned on or off.
		metrics, err := docker.NewVolume(ctx, name+"-metrics", &docker.VolumeArgs{Name: pulumi.String(args.Prefix + "-router-metrics")}, parent)
		if err != nil {
			return nil, fmt.Errorf("router: metrics volume: %w", err)
		}
		r.MetricsVolume = metrics.Name
		routerMounts = append(append(docker.ContainerMountArray{}, routerMounts...),
			docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: metrics.Name, Target: pulumi.String(contract.RouterMetricsDir)})
	}
	ports := docker.ContainerPortArray{
		docker.ContainerPortArgs{Internal: pulumi.Int(80), External: pulumi.Int(args.Stack.HTTPPort)},
	}
	if args.Stack.HTTPS() {
		ports = append(ports, docker.ContainerPortArgs{Internal: pulumi.Int(443), External: pulumi.Int(args.Stack.HTTPSPort)})
	}
	var live *docker.Volume
	if args.Stack.ACME != nil {
		// Certificates and HTTP-01 answers, written by the companion.
		// Not kept on destroy: the companion publishes them again from
		// its state.
		live, err = docker.NewVolume(ctx, name+"-acme-live", &docker.VolumeArgs{Name: pulumi.String(args.Prefix + "-acme-live")}, parent)
		if err != nil {
			return nil, fmt.Errorf("router: certificate volume: %w", err)
		}
		routerMounts = append(append(docker.ContainerMountArray{}, routerMounts...), docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: live.Name, Target: pulumi.String(contract.ACMELiveDir), ReadOnly: pulumi.Bool(true)})
	}
	router, err := docker.NewContainer(ctx, name, &docker.ContainerArgs{
		Name:  pulumi.String(args.Prefix + "-router"),
		Image: pulumi.String(args.Stack.NginxImage),
		// nginx runs as PID 1 so the installers can signal it.
		Command: pulumi.StringArray{pulumi.String("nginx"), pulumi.String("-g"), pulumi.String("daemon off;")},
		Ports:   ports,
		// Docker copies the image's conf.d (the official default.conf, a
		// welcome page) into the empty volume on first start; the installer
		// removes it with the first config. The mount's noCopy option would
		// avoid that, but the provider refuses volume options on engines
		// older than API 1.45, such as Debian 12's docker.io.
		Mounts: routerMounts,
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
			docker.ContainerNetworksAdvancedArgs{Name: args.EdgeNetwork},
		},
		Restart: pulumi.String("unless-stopped"),
		Sysctls: sysctls(args.RemoteApps),
		Labels:  routerLabels(args.Prefix, "router"),
	}, parent, platform.Named)
	if err != nil {
		return nil, fmt.Errorf("router: nginx container: %w", err)
	}

	uploads, tlsUploads := docker.ContainerUploadArray{}, docker.ContainerUploadArray{}
	for _, f := range files {
		content := pulumi.String(f.Content).ToStringOutput()
		if f.Secret {
			content = pulumi.ToSecret(content).(pulumi.StringOutput)
		}
		upload := docker.ContainerUploadArgs{File: pulumi.String(stageDir + "/" + f.Name), Content: content}
		if strings.HasPrefix(f.Name, tlsDir+"/") {
			tlsUploads = append(tlsUploads, upload)
		} else {
			uploads = append(uploads, upload)
		}
	}
	configOpts := []pulumi.ResourceOption{parent, platform.Named}
	if len(tlsUploads) > 0 {
		// Named by content hash, the files never replace the ones the
		// running config uses; the config installer, which checks and
		// reloads, runs once they are in place.
		certs, err := docker.NewContainer(ctx, name+"-tls", platform.OneShot(&docker.ContainerArgs{
			Name:  pulumi.String(args.Prefix + "-router-tls"),
			Image: pulumi.String(args.Stack.NginxImage),
			Entrypoints: pulumi.StringArray{pulumi.String("sh"), pulumi.String("-ec"), pulumi.String(fmt.Sprintf(
				`mkdir -p %[1]s/%[2]s && cp %[3]s/%[2]s/* %[1]s/%[2]s/ && chmod 600 %[1]s/%[2]s/*.key && echo "installed the certificate"`,
				contract.RouterConfDir, tlsDir, stageDir))},
			Uploads:     tlsUploads,
			Mounts:      mounts,
			NetworkMode: pulumi.String("none"),
			Labels:      routerLabels(args.Prefix, "router-config"),
		}), parent, platform.Named)
		if err != nil {
			return nil, fmt.Errorf("router: certificate container: %w", err)
		}
		placed := platform.Succeeded(certs, "router: the certificate of polls:tls was not put in place: its installer", "")
		configOpts = append(configOpts, pulumi.DependsOnInputs(placed.ApplyT(func(string) []pulumi.Resource { return []pulumi.Resource{certs} }).(pulumi.ResourceArrayOutput)))
	}
	// The config's installer is a one-shot container that runs install.sh
	// in the router's PID and network namespaces and exits. Joining the
	// router's network namespace, rather than getting one of its own
	// (network mode "none"), spares the kernel a namespace to set up and
	// tear down. It never listens; it only reads and signals.
	base, err := docker.NewContainer(ctx, name+"-config", platform.OneShot(&docker.ContainerArgs{
		Name:        pulumi.String(args.Prefix + "-router-config"),
		Image:       pulumi.String(args.Stack.NginxImage),
		Entrypoints: pulumi.StringArray{pulumi.String("sh"), pulumi.String("-ec"), pulumi.String(installScript), pulumi.String("install.sh")},
		Uploads:     uploads,
		Mounts:      mounts,
		PidMode:     pulumi.Sprintf("container:%s", router.ID()),
		NetworkMode: pulumi.Sprintf("container:%s", router.ID()),
		Labels:      routerLabels(args.Prefix, "router-config"),
	}), configOpts...)
	if err != nil {
		return nil, fmt.Errorf("router: config container: %w", err)
	}
	configured := platform.Succeeded(base, "router: the new nginx config was not installed (the previous config keeps serving): its installer", "routed")
	for _, rt := range args.Routes {
		r.Routed[rt.Server.Name] = pulumi.All(configured, rt.Serving).ApplyT(func(v []any) string { return v[0].(string) }).(pulumi.StringOutput)
		r.Live[rt.Server.Name] = r.Routed[rt.Server.Name]
	}
	if args.Stack.ACME != nil {
		companionName := args.Prefix + "-acme"
		warnFailing(ctx, args.Engine, companionName)
		if a := args.Stack.ACME; (a.Directory == spec.LetsEncryptProduction || a.Directory == spec.LetsEncryptStaging) && args.Stack.HTTPPort != 80 {
			_ = ctx.Log.Warn(fmt.Sprintf("certificates: polls:httpPort is %d, but Let's Encrypt validates HTTP-01 on port 80 only: HTTP-01 works only if port 80 reaches it (`pulumi config set polls:httpPort 80`)", args.Stack.HTTPPort), nil)
		}
		companion, state, err := declareCompanion(ctx, name, args, router, conf, live, parent)
		if err != nil {
			return nil, err
		}
		r.Companion = companion
		r.ACMEState = state.Name
		for _, rt := range args.Routes {
			if !rt.Installed {
				tenant := rt.Server.Name
				r.Routed[tenant] = awaitCertificates(ctx, args.Engine, companion, companionName, tenant, rt.Server.Hosts, r.Routed[tenant])
			}
		}
	}
	url := fmt.Sprintf("%s://localhost:%d/", args.Stack.Scheme(), args.Stack.PublicPort())
	// The URL resolves only once the config is live, so a rejected config
	// fails `pulumi up` through every output that depends on it.
	r.URL = configured.ApplyT(func(string) string { return url }).(pulumi.StringOutput)

	r.Container = router
	r.Config = base
	if err := ctx.RegisterResourceOutputs(r, pulumi.Map{"url": r.URL}); err != nil {
		return nil, fmt.Errorf("router: register outputs: %w", err)
	}
	return r, nil
}

// sysctls returns the router's sysctls: none unless apps are remote, so a
// router on one host is the container it always was.
func sysctls(remote bool) pulumi.StringMapInput {
	if !remote {
		return nil
	}
	return pulumi.ToStringMap(deadPeerSysctls)
}

func routerLabels(prefix, role string) docker.ContainerLabelArray {
	return docker.ContainerLabelArray{
		docker.ContainerLabelArgs{Label: pulumi.String(contract.LabelStack), Value: pulumi.String(prefix)},
		docker.ContainerLabelArgs{Label: pulumi.String(contract.LabelRole), Value: pulumi.String(role)},
	}
}

// File is one file the installer puts into conf.d.
type File struct {
	Name    string
	Content string
	Secret  bool
}

// Files renders the router's files, as they will be named inside dir
// (conf.d in the router): with ACME, acme.hosts, every host the
// certificate companion keeps a certificate for; with TLS, the certificate
// and key (under tls/), named by content hash so a new certificate never
// overwrites the one the running config uses before the new config passed
// `nginx -t`; polls.conf, which includes the tenants' routes; and
// tenants/routes.conf, every server's route, in the order given.
func Files(s spec.Stack, servers []nginx.Server, dir string) ([]File, error) {
	cfg := Config(s, dir)
	var files []File
	if s.ACME != nil {
		files = append(files, File{Name: contract.ACMEHostsFile, Content: ACMEHostsFile(s)})
	}
	if s.TLS != nil {
		cert, key := tlsFiles(s.TLS)
		files = append(files, File{Name: cert, Content: s.TLS.CertificatePEM}, File{Name: key, Content: s.TLS.KeyPEM, Secret: true})
	}
	conf, err := nginx.Render(cfg)
	if err != nil {
		return nil, err
	}
	var routes []byte
	for _, srv := range servers {
		route, err := nginx.RenderServer(cfg, srv)
		if err != nil {
			return nil, fmt.Errorf("route of tenant %s: %w", srv.Name, err)
		}
		routes = append(routes, route...)
	}
	return append(files, File{Name: "polls.conf", Content: string(conf)}, File{Name: RoutesFile, Content: string(routes)}), nil
}

// The ports nginx listens on in the router's network namespace (the
// stack's polls:httpPort and polls:httpsPort are published to them).
const (
	listenHTTP  = "80"
	listenHTTPS = "443"
)

// Config is the router's nginx config for the stack, its files inside dir
// (conf.d in the router), with no servers: those are the tenants' routes,
// included from dir/tenants.
func Config(s spec.Stack, dir string) nginx.Config {
	cfg := nginx.Config{Resolver: contract.DockerDNS, Listen: listenHTTP, ListenTLS: listenHTTPS, Include: dir + "/tenants/*.conf"}
	if s.Monitoring != nil {
		cfg.Metrics = &nginx.Metrics{Socket: contract.RouterMetricsSocket, NoTenant: contract.RouterNoTenant}
	}
	if s.ACME != nil {
		cfg.ACME = acmeNginx(s)
	}
	if s.TLS != nil {
		cert, key := tlsFiles(s.TLS)
		cfg.TLS = &nginx.TLS{CertificatePath: dir + "/" + cert, KeyPath: dir + "/" + key}
	}
	return cfg
}

// tlsFiles names the certificate and key by their content's hash.
func tlsFiles(t *spec.TLS) (cert, key string) {
	sum := sha256.Sum256([]byte(t.CertificatePEM + t.KeyPEM))
	id := hex.EncodeToString(sum[:8])
	return tlsDir + "/" + id + ".crt", tlsDir + "/" + id + ".key"
}

// tlsDir holds the certificate and key of polls:tls, in conf.d.
const tlsDir = "tls"

// RoutesFile holds every tenant's servers, in conf.d.
const RoutesFile = "tenants/routes.conf"
