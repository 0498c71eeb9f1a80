// Package router declares the one nginx router in front of every tenant.
//
// Almost every docker container argument forces a replacement, and the
// provider replaces delete-first: a router whose config were one of its
// arguments would drop every tenant's requests whenever a tenant is added.
// So the router container's arguments never mention tenants. Its config lives
// on a volume, written by a short-lived "config" container that shares the
// router's PID namespace: it stages the new files, checks them with the real
// `nginx -t`, moves them into place and sends nginx SIGHUP, which reloads
// gracefully. A config nginx rejects fails `pulumi up` and never goes live.
package router

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/dockerlog"
	"github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/spec"
)

// installScript runs in the config container; see the package comment.
//
//go:embed install.sh
var installScript string

// Type is the component's type token.
const Type = "polls:index:Router"

const (
	confDir = "/etc/nginx/conf.d"
	// stageDir is where the config container receives the new files.
	stageDir = "/polls/next"
	// dockerDNS is Docker's embedded DNS server on user-defined networks.
	dockerDNS = "127.0.0.11"
)

// Args configures the router.
type Args struct {
	// Stack supplies ports, TLS and the nginx image.
	Stack spec.Stack
	// Prefix starts every Docker object name, e.g. "polls-dev".
	Prefix string
	// Servers are the tenants to route to.
	Servers []nginx.Server
	// EdgeNetwork is the network shared with the tenants' apps.
	EdgeNetwork pulumi.StringInput
	// Apps are the tenants' app containers: the config goes live only after
	// they are healthy.
	Apps []pulumi.Resource
}

// Router is the component resource for the router.
type Router struct {
	pulumi.ResourceState

	// URL is the router's base URL on the Docker host.
	URL pulumi.StringOutput `pulumi:"url"`
	// Container is the nginx container.
	Container *docker.Container `pulumi:"-"`
	// Config is the container that installed the current config.
	Config *docker.Container `pulumi:"-"`
}

// New declares the router.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Router, error) {
	r := &Router{}
	if err := ctx.RegisterComponentResource(Type, name, r, opts...); err != nil {
		return nil, fmt.Errorf("router: register component: %w", err)
	}
	parent := pulumi.Parent(r)

	files, err := Files(args.Stack, args.Servers, confDir)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}

	conf, err := docker.NewVolume(ctx, name+"-conf", &docker.VolumeArgs{
		Name: pulumi.String(args.Prefix + "-router-conf"),
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("router: config volume: %w", err)
	}
	ports := docker.ContainerPortArray{
		docker.ContainerPortArgs{Internal: pulumi.Int(80), External: pulumi.Int(args.Stack.HTTPPort)},
	}
	if args.Stack.TLS != nil {
		ports = append(ports, docker.ContainerPortArgs{Internal: pulumi.Int(443), External: pulumi.Int(args.Stack.HTTPSPort)})
	}
	router, err := docker.NewContainer(ctx, name, &docker.ContainerArgs{
		Name:  pulumi.String(args.Prefix + "-router"),
		Image: pulumi.String(args.Stack.NginxImage),
		// nginx runs as PID 1 so the config container can signal it.
		Command: pulumi.StringArray{pulumi.String("nginx"), pulumi.String("-g"), pulumi.String("daemon off;")},
		Ports:   ports,
		// Docker copies the image's conf.d (the official default.conf, a
		// welcome page) into the empty volume on first start; the installer
		// removes it with the first config. The mount's noCopy option would
		// avoid that, but the provider refuses volume options on engines
		// older than API 1.45, such as Debian 12's docker.io.
		Mounts: docker.ContainerMountArray{
			docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: conf.Name, Target: pulumi.String(confDir)},
		},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
			docker.ContainerNetworksAdvancedArgs{Name: args.EdgeNetwork},
		},
		Restart: pulumi.String("unless-stopped"),
		Labels:  routerLabels(args.Prefix, "router"),
	}, parent, named)
	if err != nil {
		return nil, fmt.Errorf("router: nginx container: %w", err)
	}

	uploads := docker.ContainerUploadArray{}
	for _, f := range files {
		content := pulumi.String(f.Content).ToStringOutput()
		if f.Secret {
			content = pulumi.ToSecret(content).(pulumi.StringOutput)
		}
		uploads = append(uploads, docker.ContainerUploadArgs{File: pulumi.String(stageDir + "/" + f.Name), Content: content})
	}
	install, err := docker.NewContainer(ctx, name+"-config", &docker.ContainerArgs{
		Name:        pulumi.String(args.Prefix + "-router-config"),
		Image:       pulumi.String(args.Stack.NginxImage),
		Entrypoints: pulumi.StringArray{pulumi.String("sh"), pulumi.String("-ec"), pulumi.String(installScript)},
		Uploads:     uploads,
		Mounts: docker.ContainerMountArray{
			docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: conf.Name, Target: pulumi.String(confDir)},
		},
		PidMode:     pulumi.Sprintf("container:%s", router.ID()),
		NetworkMode: pulumi.String("none"),
		Attach:      pulumi.Bool(true),
		Logs:        pulumi.Bool(true),
		MustRun:     pulumi.Bool(false),
		Restart:     pulumi.String("no"),
		Labels:      routerLabels(args.Prefix, "router-config"),
	}, parent, named, pulumi.DependsOn(args.Apps))
	if err != nil {
		return nil, fmt.Errorf("router: config container: %w", err)
	}

	url := fmt.Sprintf("%s://localhost:%d/", args.Stack.Scheme(), args.Stack.PublicPort())
	// The URL resolves only once the config is live, so a rejected config
	// fails `pulumi up` through every output that depends on it.
	r.URL = pulumi.All(install.ExitCode, install.ContainerLogs).ApplyT(func(v []any) (string, error) {
		code, _ := v[0].(int)
		logs, _ := v[1].(string)
		if code != 0 {
			return "", fmt.Errorf("router: the new nginx config was not installed (config container exited with status %d; the previous config keeps serving); its log:\n%s", code, dockerlog.Demux(logs))
		}
		return url, nil
	}).(pulumi.StringOutput)
	r.Container = router
	r.Config = install
	if err := ctx.RegisterResourceOutputs(r, pulumi.Map{"url": r.URL}); err != nil {
		return nil, fmt.Errorf("router: register outputs: %w", err)
	}
	return r, nil
}

// named is for resources with a fixed Docker name: a replacement must delete
// the old one first, as Docker refuses two containers of one name.
var named = pulumi.DeleteBeforeReplace(true)

func routerLabels(prefix, role string) docker.ContainerLabelArray {
	return docker.ContainerLabelArray{
		docker.ContainerLabelArgs{Label: pulumi.String("polls.stack"), Value: pulumi.String(prefix)},
		docker.ContainerLabelArgs{Label: pulumi.String("polls.role"), Value: pulumi.String(role)},
	}
}

// File is one file the config container installs into conf.d.
type File struct {
	Name    string
	Content string
	Secret  bool
}

// Files renders the router's files, as they will be named inside dir
// (conf.d in the router): polls.conf and, with TLS, the certificate and key,
// named by content hash so a new certificate never overwrites the one the
// running config uses before the new config passed `nginx -t`.
func Files(s spec.Stack, servers []nginx.Server, dir string) ([]File, error) {
	cfg := nginx.Config{Servers: servers, Resolver: dockerDNS, Listen: "80", ListenTLS: "443"}
	var files []File
	if s.TLS != nil {
		sum := sha256.Sum256([]byte(s.TLS.CertificatePEM + s.TLS.KeyPEM))
		id := hex.EncodeToString(sum[:8])
		cert, key := "tls/"+id+".crt", "tls/"+id+".key"
		cfg.TLS = &nginx.TLS{CertificatePath: dir + "/" + cert, KeyPath: dir + "/" + key}
		files = append(files, File{Name: cert, Content: s.TLS.CertificatePEM}, File{Name: key, Content: s.TLS.KeyPEM, Secret: true})
	}
	conf, err := nginx.Render(cfg)
	if err != nil {
		return nil, err
	}
	return append(files, File{Name: "polls.conf", Content: string(conf)}), nil
}
