package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strings"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/appbuild"
	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/monitoring"
	"github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/onehost"
	"github.com/polls-tenants/polls/router"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/swarm"
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

// Engine is what declare asks the Docker engine itself, whatever the
// platform (package dockerapi implements it).
type Engine interface {
	onehost.Engine
	swarm.Engine
	router.Engine
	BackupEngine
	buildEngine
}

// stackPlatform is a tenants.Platform with what the whole stack needs of it.
type stackPlatform interface {
	tenants.Platform
	// Declare registers what the tenants share.
	Declare(ctx *pulumi.Context, opts ...pulumi.ResourceOption) error
	// EdgeNetwork is the network the router and every app share.
	EdgeNetwork() pulumi.StringOutput
	// RemoteApps reports whether apps run on other machines than the
	// router's, which can vanish without closing their connections.
	RemoteApps() bool
	// Existing reports whether the tenant was deployed before this update.
	Existing(tenant string) bool
	// LegacyPasswords reports whether an earlier version of the program
	// deployed the tenant, with its passwords as random.RandomPassword
	// resources (tenants.Args.LegacyPasswords).
	LegacyPasswords(tenant string) bool
	// AppPort is the port the tenant's app listens on.
	AppPort(tenant string) int
	// Retire stops what the tenant's new version replaced, once routed
	// (its route is live) resolves.
	Retire(ctx *pulumi.Context, tenant string, routed pulumi.StringOutput) pulumi.StringOutput
	// AppliedRestore is the restore (contract.RestoreID) the tenant's
	// running database was restored with, or "".
	AppliedRestore(tenant string) string
	// Moves reports whether the tenant's database moves to another node:
	// its old copy stays there, untouched, so no backup is taken of it
	// before a restore.
	Moves(tenant string) bool
}

// plan reads what the platform needs from the engine and plans the stack
// on it, before anything is registered: tenant subnets on one engine,
// database nodes on Swarm.
func plan(ctx *pulumi.Context, s spec.Stack, engine Engine, prefix string) (stackPlatform, error) {
	if s.Platform == spec.PlatformSwarm {
		return swarm.New(ctx, engine, s, prefix)
	}
	return onehost.New(ctx.Context(), engine, s, prefix)
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
	for _, k := range spec.SecretKeys {
		if values[k.Key] != "" && !ctx.IsConfigSecret(spec.Namespace+":"+k.Key) {
			return spec.Stack{}, fmt.Errorf("invalid stack config (nothing was changed):\n%s:%s is stored in plain text: set it with `%s`", spec.Namespace, k.Key, k.Set)
		}
	}
	return spec.Parse(values)
}

// deployed is what declare registered that outputs are made of.
type deployed struct {
	Router  *router.Router
	Tenants map[string]*tenants.Tenant
	// Monitoring is nil when polls:monitoring is false.
	Monitoring *monitoring.Monitoring
}

// declare registers every resource of the stack and exports its outputs.
func declare(ctx *pulumi.Context, s spec.Stack, engine Engine) (*deployed, error) {
	prefix := ctx.Project() + "-" + ctx.Stack()
	on, err := plan(ctx, s, engine, prefix)
	if err != nil {
		return nil, err
	}
	var bp *backupPlan
	if s.Backup != nil {
		if bp, err = planBackups(ctx, s, engine, prefix, on.AppliedRestore); err != nil {
			return nil, err
		}
	}
	builder, err := chooseBuilder(ctx.Context(), s, engine)
	if err != nil {
		return nil, err
	}
	provider, err := docker.NewProvider(ctx, "docker", &docker.ProviderArgs{Host: optional(s.DockerHost)})
	if err != nil {
		return nil, fmt.Errorf("docker provider: %w", err)
	}
	onDocker := pulumi.Provider(provider)

	// The stack's own images first: a legacy build's leftovers are removed
	// once every build of the update is done (see appImage).
	w := prepareBuilds(ctx, s, prefix, builder, engine)
	// One agent image for the backups, the certificate companion and the
	// metrics exporter.
	var db, agent *docker.Image
	var built []pulumi.Output
	if s.Backup != nil || s.ACME != nil || s.Monitoring != nil {
		if agent, err = agentImage(ctx, s, prefix, builder, onDocker); err != nil {
			return nil, err
		}
		built = append(built, agent.ImageName)
	}
	if s.Backup != nil {
		// After the agent's image: both targets start from the same Go
		// build stage, which the second build then takes from the cache.
		// Built side by side, each compiled it: with the legacy builder,
		// 316 s and 367 s in one e2e run, against the app's 162 s.
		dbOpts := []pulumi.ResourceOption{onDocker}
		if agent != nil {
			dbOpts = append(dbOpts, pulumi.DependsOn([]pulumi.Resource{agent}))
		}
		if db, err = dbImage(ctx, s, prefix, builder, dbOpts...); err != nil {
			return nil, err
		}
		built = append(built, db.ImageName)
	}
	image, err := appImage(ctx, s, prefix, builder, engine, w, built, onDocker)
	if err != nil {
		return nil, err
	}
	if err := on.Declare(ctx, onDocker); err != nil {
		return nil, err
	}
	perTenant, stackBackups, err := declareBackups(ctx, s, engine, prefix, bp, on.Moves, db, agent, onDocker)
	if err != nil {
		return nil, err
	}

	// The tenants' passwords are derived from this key (tenants.Args.Key).
	// Replacing it (pulumi up --replace with its URN) rotates every
	// tenant's passwords at once.
	key, err := random.NewRandomPassword(ctx, "tenant-key", &random.RandomPasswordArgs{
		Length: pulumi.Int(43), Special: pulumi.Bool(false),
	})
	if err != nil {
		return nil, fmt.Errorf("tenant key: %w", err)
	}
	tenantKey := pulumi.ToSecret(key.Result).(pulumi.StringOutput)

	d := &deployed{Tenants: map[string]*tenants.Tenant{}}
	var routes []router.Route
	first := newNewFirst(ctx, s.Tenants, on.Existing)
	for _, t := range s.Tenants {
		tn, err := tenants.New(ctx, tenants.Args{
			Tenant: t, Stack: s, Prefix: prefix,
			// RepoDigest is the built image's ID, or on Swarm its digest in
			// the registry: a code change rolls the app, an unchanged tree
			// changes nothing.
			AppImage:        image.RepoDigest,
			Platform:        on,
			Key:             tenantKey,
			LegacyPasswords: on.LegacyPasswords(t.Name),
			AppPort:         on.AppPort(t.Name),
			Backup:          perTenant[t.Name],
			Hold:            first.Hold(on.Existing(t.Name)),
		}, pulumi.Providers(provider))
		if err != nil {
			return nil, err
		}
		d.Tenants[t.Name] = tn
		routes = append(routes, router.Route{Server: nginx.Server{Name: t.Name, Hosts: t.ServerNames(s.Domain), Upstream: tn.Upstream}, Serving: tn.Serving, Installed: on.Existing(t.Name)})
	}

	var companionImage pulumi.StringInput
	if s.ACME != nil {
		companionImage = agent.RepoDigest
	}
	r, err := router.New(ctx, "router", router.Args{
		Stack: s, Prefix: prefix, Routes: routes, EdgeNetwork: on.EdgeNetwork(), RemoteApps: on.RemoteApps(),
		AgentImage: companionImage, Engine: engine,
	}, pulumi.Providers(provider))
	if err != nil {
		return nil, err
	}
	first.ReleaseWhen(r.Live)
	warnBackups := func() error { return nil }
	if bp != nil {
		warnBackups = bp.warnLater(ctx, engine, s.Tenants, prefix, first.Released())
	}
	if s.Monitoring != nil {
		if d.Monitoring, err = declareMonitoring(ctx, s, engine, prefix, agent, r, stackBackups, pulumi.Providers(provider)); err != nil {
			return nil, err
		}
	}

	tenantOutputs := pulumi.Map{}
	adminPasswords := pulumi.StringMap{}
	for name, tn := range d.Tenants {
		// A tenant's URL resolves once the router's config with its route
		// is live, its app serves, and the version it replaced is stopped.
		url := pulumi.All(tn.URL, on.Retire(ctx, name, r.Routed[name]), r.URL).ApplyT(func(v []any) string { return v[0].(string) }).(pulumi.StringOutput)
		tenantOutputs[name] = pulumi.Map{"url": url, "adminUser": tn.AdminUser}
		adminPasswords[name] = tn.AdminPassword
	}
	d.Router = r
	ctx.Export("routerUrl", r.URL)
	ctx.Export("tenants", tenantOutputs)
	ctx.Export("adminPasswords", pulumi.ToSecret(adminPasswords))
	if err := warnBackups(); err != nil {
		return nil, err
	}
	return d, nil
}

// appImage declares the build of app/ with builder. On Swarm it is pushed
// to polls:registry, from which every node pulls it.
//
// The image, and every step of a legacy build, is labelled with the
// stack's prefix (appbuild.BuildArgs), so that what builds leave can be
// found: an update first removes what earlier builds left, and after a
// legacy build it removes the build's step containers (see package
// appbuild for why there are any).
func appImage(ctx *pulumi.Context, s spec.Stack, prefix string, builder appbuild.Builder, engine buildEngine, w *watcher, others []pulumi.Output, opts ...pulumi.ResourceOption) (*docker.Image, error) {
	name := s.AppImageName(prefix) + ":latest"
	repo := imageRepo(name)
	buildArgs := map[string]string{}
	maps.Copy(buildArgs, s.AppBuildArgs)
	maps.Copy(buildArgs, appbuild.BuildArgs(builder, prefix))
	args := &docker.ImageArgs{
		ImageName: pulumi.String(name),
		SkipPush:  pulumi.Bool(true),
		Build: docker.DockerBuildArgs{
			Context:        pulumi.String("app"),
			Args:           pulumi.ToStringMap(buildArgs),
			Network:        optional(s.AppBuildNetwork),
			BuilderVersion: builderVersion(builder),
		},
	}
	if s.Platform == spec.PlatformSwarm {
		args.SkipPush = pulumi.Bool(false)
		registry := docker.RegistryArgs{Server: pulumi.String(s.RegistryHost())}
		if a := s.RegistryAuth; a != nil {
			registry.Username = pulumi.String(a.Username)
			registry.Password = pulumi.ToSecret(pulumi.String(a.Password)).(pulumi.StringOutput)
		}
		args.Registry = registry
	}
	image, err := docker.NewImage(ctx, "app", args, opts...)
	if err != nil {
		return nil, fmt.Errorf("app image: %w", err)
	}
	if w != nil {
		// Runs once every build succeeded (the stack's other images are
		// built with the same builder and label); a failed one is the
		// watcher's.
		pulumi.All(append([]any{image.ImageName}, toAny(others)...)...).ApplyT(func([]any) (string, error) {
			if err := cleanBuilds(ctx.Context(), engine, prefix, repo, true); err != nil {
				_ = ctx.Log.Warn(fmt.Sprintf("app image: the legacy build's leftovers stay until the next update: %v", err), nil)
			}
			w.done()
			return "", nil
		})
	}
	return image, nil
}

// prepareBuilds, before any of the update's images is declared (their
// builds start as soon as they are), removes what earlier builds left and,
// for a legacy build, starts the watcher that removes what a failed one
// leaves. A preview changes nothing on the host, leftovers included.
func prepareBuilds(ctx *pulumi.Context, s spec.Stack, prefix string, builder appbuild.Builder, engine buildEngine) *watcher {
	if ctx.DryRun() {
		return nil
	}
	repo := imageRepo(s.AppImageName(prefix) + ":latest")
	if err := cleanBuilds(ctx.Context(), engine, prefix, repo, false); err != nil {
		_ = ctx.Log.Warn(fmt.Sprintf("app image: earlier builds' leftovers stay: %v", err), nil)
	}
	if builder != appbuild.Legacy {
		return nil
	}
	w, err := watchBuilds(s.DockerHost, prefix, repo)
	if err != nil {
		_ = ctx.Log.Warn(fmt.Sprintf("app image: a failed legacy build will leave its step containers until the next update: %v", err), nil)
		return nil
	}
	return w
}

func toAny(outs []pulumi.Output) []any {
	a := make([]any, len(outs))
	for i, o := range outs {
		a[i] = o
	}
	return a
}

func optional(s string) pulumi.StringPtrInput {
	if s == "" {
		return nil
	}
	return pulumi.String(s)
}
