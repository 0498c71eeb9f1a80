package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/router"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/subnets"
	"github.com/polls-tenants/polls/tenants"
)

// program returns the Pulumi program: it reads and validates the stack
// config, connects to the Docker engine, then declares the stack. Nothing is
// registered unless the whole config is valid.
func program(connect func(host string) (Engine, error)) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		s, err := readConfig(ctx)
		if err != nil {
			return err
		}
		engine, err := connect(s.DockerHost)
		if err != nil {
			return fmt.Errorf("invalid stack config (nothing was changed):\npolls:dockerHost: %w", err)
		}
		_, err = declare(ctx, s, engine)
		return err
	}
}

// dockerEngine connects to the engine the docker provider deploys to.
func dockerEngine(host string) (Engine, error) { return dockerapi.New(host) }

// Engine is what declare asks the Docker engine itself: its networks, to
// plan tenant subnets, and whether containers came up.
type Engine interface {
	tenants.Engine
	Networks(ctx context.Context) ([]dockerapi.Network, error)
}

// planSubnets gives every tenant its private subnet: the one its network
// already has, or the lowest free /28 of polls:subnetPool (package subnets).
// Nothing is created when the pool collides with a network on the engine
// or is full.
func planSubnets(ctx context.Context, engine Engine, s spec.Stack, prefix string) (map[string]netip.Prefix, map[string]netip.Addr, error) {
	nets, err := engine.Networks(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list the Docker engine's networks to plan tenant subnets: %w", err)
	}
	byName := map[string]dockerapi.Network{}
	var all []subnets.Network
	for _, n := range nets {
		byName[n.Name] = n
		_, shared := n.Labels["polls.tenant"]
		all = append(all, subnets.Network{Name: n.Name, Subnets: n.Subnets, Shared: shared})
	}
	current := map[string]netip.Prefix{}
	gateways := map[string]netip.Addr{}
	names := make([]string, len(s.Tenants))
	for i, t := range s.Tenants {
		names[i] = t.Name
		if n, ok := byName[tenants.NetworkName(prefix, t.Name)]; ok && len(n.Subnets) > 0 {
			current[t.Name] = n.Subnets[0]
			if gw, ok := n.Gateways[n.Subnets[0]]; ok {
				gateways[t.Name] = gw
			}
		}
	}
	plan, err := subnets.Plan(s.SubnetPool, names, current, all)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid stack config (nothing was changed):\n%w", err)
	}
	for t, p := range plan {
		if _, ok := gateways[t]; !ok {
			gateways[t] = subnets.Gateway(p)
		}
	}
	return plan, gateways, nil
}

// readConfig collects the raw values of the project's config namespace and
// parses them. Unknown keys come from the engine's full config, so a typo
// such as polls:tenant is an error, not a silently ignored key.
func readConfig(ctx *pulumi.Context) (spec.Stack, error) {
	values := map[string]string{}
	for _, k := range spec.Keys {
		if v, ok := ctx.GetConfig(spec.Namespace + ":" + k); ok {
			values[k] = v
		}
	}
	var all map[string]string
	if err := json.Unmarshal([]byte(os.Getenv(pulumi.EnvConfig)), &all); err == nil {
		for k, v := range all {
			if key, ok := strings.CutPrefix(k, spec.Namespace+":"); ok {
				values[key] = v
			}
		}
	}
	if values["tlsKey"] != "" && !ctx.IsConfigSecret(spec.Namespace+":tlsKey") {
		return spec.Stack{}, fmt.Errorf("invalid stack config (nothing was changed):\npolls:tlsKey is stored in plain text: set it with `pulumi config set --secret polls:tlsKey -- \"$(cat key.pem)\"`")
	}
	if values["registryPassword"] != "" && !ctx.IsConfigSecret(spec.Namespace+":registryPassword") {
		return spec.Stack{}, fmt.Errorf("invalid stack config (nothing was changed):\npolls:registryPassword is stored in plain text: set it with `pulumi config set --secret polls:registryPassword -- \"$PASSWORD\"`")
	}
	return spec.Parse(values)
}

// deployed is what declare registered that outputs are made of.
type deployed struct {
	Router  *router.Router
	Tenants map[string]*tenants.Tenant
}

// declare registers every resource of the stack and exports its outputs.
func declare(ctx *pulumi.Context, s spec.Stack, engine Engine) (*deployed, error) {
	prefix := ctx.Project() + "-" + ctx.Stack()
	subnetOf, gatewayOf, err := planSubnets(ctx.Context(), engine, s, prefix)
	if err != nil {
		return nil, err
	}
	provider, err := docker.NewProvider(ctx, "docker", &docker.ProviderArgs{Host: optional(s.DockerHost)})
	if err != nil {
		return nil, fmt.Errorf("docker provider: %w", err)
	}
	onDocker := pulumi.Provider(provider)

	image, err := docker.NewImage(ctx, "app", &docker.ImageArgs{
		ImageName: pulumi.String(prefix + "-app:latest"),
		SkipPush:  pulumi.Bool(true),
		Build: docker.DockerBuildArgs{
			Context:        pulumi.String("app"),
			Args:           pulumi.ToStringMap(s.AppBuildArgs),
			Network:        optional(s.AppBuildNetwork),
			BuilderVersion: docker.BuilderVersionBuilderV1,
		},
	}, onDocker)
	if err != nil {
		return nil, fmt.Errorf("app image: %w", err)
	}
	// The router and every app meet on this network; databases never do.
	edge, err := docker.NewNetwork(ctx, "edge", &docker.NetworkArgs{Name: pulumi.String(prefix + "-edge")}, onDocker, pulumi.DeleteBeforeReplace(true))
	if err != nil {
		return nil, fmt.Errorf("edge network: %w", err)
	}

	d := &deployed{Tenants: map[string]*tenants.Tenant{}}
	var routes []router.Route
	for _, t := range s.Tenants {
		tn, err := tenants.New(ctx, tenants.Args{
			Tenant: t, Stack: s, Prefix: prefix,
			// RepoDigest is the built image's ID: a code change rolls the
			// containers, an unchanged tree changes nothing.
			AppImage:    image.RepoDigest,
			EdgeNetwork: edge.Name,
			Subnet:      subnetOf[t.Name], Gateway: gatewayOf[t.Name],
			Engine: engine,
		}, pulumi.Providers(provider))
		if err != nil {
			return nil, err
		}
		d.Tenants[t.Name] = tn
		routes = append(routes, router.Route{Server: nginx.Server{Name: t.Name, Hosts: t.ServerNames(s.Domain)}, Upstream: tn.Upstream})
	}

	r, err := router.New(ctx, "router", router.Args{
		Stack: s, Prefix: prefix, Routes: routes, EdgeNetwork: edge.Name,
	}, pulumi.Providers(provider))
	if err != nil {
		return nil, err
	}

	tenantOutputs := pulumi.Map{}
	adminPasswords := pulumi.StringMap{}
	for name, tn := range d.Tenants {
		// A tenant's URL resolves once its route is installed and the
		// shared config that includes it is live.
		url := pulumi.All(tn.URL, r.Routed[name], r.URL).ApplyT(func(v []any) string { return v[0].(string) }).(pulumi.StringOutput)
		tenantOutputs[name] = pulumi.Map{"url": url, "adminUser": tn.AdminUser}
		adminPasswords[name] = tn.AdminPassword
	}
	d.Router = r
	ctx.Export("routerUrl", r.URL)
	ctx.Export("tenants", tenantOutputs)
	ctx.Export("adminPasswords", pulumi.ToSecret(adminPasswords))
	return d, nil
}

func optional(s string) pulumi.StringPtrInput {
	if s == "" {
		return nil
	}
	return pulumi.String(s)
}
