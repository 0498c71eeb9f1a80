package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/router"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/tenants"
)

// program reads and validates the stack config, then declares the stack.
// Nothing is registered unless the whole config is valid.
func program(ctx *pulumi.Context) error {
	s, err := readConfig(ctx)
	if err != nil {
		return err
	}
	_, err = declare(ctx, s)
	return err
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
	return spec.Parse(values)
}

// deployed is what declare registered that outputs are made of.
type deployed struct {
	Router  *router.Router
	Tenants map[string]*tenants.Tenant
}

// declare registers every resource of the stack and exports its outputs.
func declare(ctx *pulumi.Context, s spec.Stack) (*deployed, error) {
	prefix := ctx.Project() + "-" + ctx.Stack()
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
	var (
		apps           []pulumi.Resource
		servers        []nginx.Server
		tenantOutputs  = pulumi.Map{}
		adminPasswords = pulumi.StringMap{}
	)
	for _, t := range s.Tenants {
		tn, err := tenants.New(ctx, tenants.Args{
			Tenant: t, Stack: s, Prefix: prefix,
			// RepoDigest is the built image's ID: a code change rolls the
			// containers, an unchanged tree changes nothing.
			AppImage:    image.RepoDigest,
			EdgeNetwork: edge.Name,
		}, pulumi.Providers(provider))
		if err != nil {
			return nil, err
		}
		d.Tenants[t.Name] = tn
		apps = append(apps, tn.App)
		servers = append(servers, nginx.Server{Name: t.Name, Hosts: t.ServerNames(s.Domain), Upstream: t.Name + ":" + strconv.Itoa(spec.AppPort)})
		tenantOutputs[t.Name] = pulumi.Map{"url": tn.URL, "adminUser": tn.AdminUser}
		adminPasswords[t.Name] = tn.AdminPassword
	}

	r, err := router.New(ctx, "router", router.Args{
		Stack: s, Prefix: prefix, Servers: servers, EdgeNetwork: edge.Name, Apps: apps,
	}, pulumi.Providers(provider))
	if err != nil {
		return nil, err
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
