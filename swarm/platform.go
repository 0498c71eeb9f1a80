// Package swarm realises tenants (package tenants) as services on a Docker
// Swarm cluster, through a manager's engine:
//
//   - per tenant an internal, attachable overlay network;
//   - its PostgreSQL as a one-replica service pinned to one node, as its
//     volume is local to that node (package placement decides which);
//   - its secrets as Docker secrets, mounted as files;
//   - its migration as a container on the manager, attached to the
//     tenant's overlay network, as on one host (platform.Migration): a
//     container gives its exit code and log, a service does not;
//   - its app as a replicated service, spread over nodes, updated
//     start-first and rolled back when the new version fails its health
//     check.
//
// The router stays a container on the manager's engine (package router),
// on an attachable overlay network every app joins; it finds an app's tasks
// through Swarm's DNS (endpoint mode dnsrr: there is no routing mesh or
// virtual IP on every cluster).
package swarm

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/placement"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/tenants"
)

// Engine is what the platform asks the manager's engine itself (package
// dockerapi implements it).
type Engine interface {
	// Nodes lists the cluster's nodes.
	Nodes(ctx context.Context) ([]dockerapi.Node, error)
	// Services lists the services carrying every label given.
	Services(ctx context.Context, labels map[string]string) ([]dockerapi.Service, error)
	// WaitService returns once every replica of service id runs the
	// declared spec and is healthy, and fails early when it will not.
	WaitService(ctx context.Context, id string, want dockerapi.Declared, within time.Duration) error
	// Digest returns the digest ref has in its registry now.
	Digest(ctx context.Context, ref string, auth *dockerapi.RegistryAuth) (string, error)
	// LabelNode sets a label on the node with the given hostname.
	LabelNode(ctx context.Context, hostname, key, value string) error
	// UnlabelNode removes a label from the node with the given hostname.
	UnlabelNode(ctx context.Context, hostname, key string) error
}

// DataLabel is the node label saying the node holds a tenant's database
// volume. It outlives the database's service, as the volume does, so a
// tenant removed and added back returns to its data (package placement).
func DataLabel(prefix, tenant string) string { return "polls.data." + prefix + "." + tenant }

// Platform realises tenants on a Swarm cluster.
type Platform struct {
	// Engine watches services come up.
	Engine Engine
	// Nodes maps each tenant to the node its database is pinned to.
	Nodes map[string]string
	// Edge is the name of the overlay network the router and every app
	// share; set by Declare.
	Edge pulumi.StringOutput

	prefix       string
	registryAuth *spec.RegistryAuth
	registryHost string
	// pinned maps image references to the same with their digest.
	pinned map[string]string
	// existing are the tenants whose database service ran before.
	existing map[string]bool
	// legacy holds the tenants whose database service lacks
	// contract.LabelSecrets: deployed by a version that generated their
	// passwords as resources.
	legacy map[string]bool
	// dbWithin and appWithin bound the wait for a tenant's database and app
	// services (platform.StartWait).
	dbWithin, appWithin time.Duration
	// restored maps each tenant to its database service's polls.restore.
	restored map[string]string
	// data maps each tenant to the nodes labelled as holding its data.
	data map[string][]string
	// moves are the tenants whose database moves to another node.
	moves map[string]bool
}

// AppPort is contract.AppPort for every tenant: the router reaches the
// apps by their services' names, and Swarm hands an address on the edge
// network out again only after the rest of its subnet (its allocator is
// serial), so one port is enough here (package ports says why one host
// needs one per tenant).
func (p *Platform) AppPort(string) int { return contract.AppPort }

// Moves reports whether the tenant's database moves to another node in
// this update (restored there from its backups).
func (p *Platform) Moves(tenant string) bool { return p.moves[tenant] }

var _ tenants.Platform = (*Platform)(nil)

// How long a service may take to run every replica of its current spec,
// with no other tenant new (platform.StartWait).
const (
	dbWait  = 3 * time.Minute
	appWait = 3 * time.Minute
)

// New plans the stack on the cluster: which node each tenant's database is
// pinned to. It registers nothing, so a plan that fails changes nothing;
// tenants whose node cannot run tasks now are logged as warnings.
func New(ctx *pulumi.Context, engine Engine, s spec.Stack, prefix string) (*Platform, error) {
	nodes, err := engine.Nodes(ctx.Context())
	if errors.Is(err, dockerapi.ErrNotManager) {
		return nil, fmt.Errorf("invalid stack config (nothing was changed):\npolls:platform: swarm, but %v: point polls:dockerHost at a manager of the cluster, or create one with `docker swarm init`", err)
	}
	if err != nil {
		return nil, fmt.Errorf("list the Swarm nodes to place databases: %w", err)
	}
	dbs, err := engine.Services(ctx.Context(), map[string]string{"polls.stack": prefix, "polls.role": "db"})
	if err != nil {
		return nil, fmt.Errorf("list the databases' services to keep them on their nodes: %w", err)
	}
	current := map[string]string{}
	restored := map[string]string{}
	legacy := map[string]bool{}
	for _, d := range dbs {
		if t, n := d.Labels["polls.tenant"], d.Labels["polls.node"]; t != "" && n != "" {
			current[t] = n
			legacy[t] = d.Labels[contract.LabelSecrets] == ""
		}
		restored[d.Labels["polls.tenant"]] = d.Labels["polls.restore"]
	}
	data := map[string][]string{}
	for _, n := range nodes {
		for k := range n.Labels {
			if t, ok := strings.CutPrefix(k, DataLabel(prefix, "")); ok {
				data[t] = append(data[t], n.Hostname)
			}
		}
	}
	var pn []placement.Node
	for _, n := range nodes {
		state := ""
		switch {
		case !n.Ready:
			state = "down"
		case n.Availability != "active":
			state = n.Availability
		}
		pn = append(pn, placement.Node{Hostname: n.Hostname, Available: state == "", State: state})
	}
	var pt []placement.Tenant
	for _, t := range s.Tenants {
		// A restore not yet applied brings the data from the backups, so
		// the database may move to the node the tenant names.
		restoring := s.Backup != nil && t.Restore != "" && contract.RestoreID(t.Name, t.RestoreFrom, t.Restore) != restored[t.Name]
		pt = append(pt, placement.Tenant{Name: t.Name, Node: t.Node, Restoring: restoring})
	}
	plan, warnings, err := placement.Plan(pt, current, data, pn)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		if err := ctx.Log.Warn(w, nil); err != nil {
			return nil, err
		}
	}
	p := &Platform{Engine: engine, Nodes: plan, prefix: prefix, registryAuth: s.RegistryAuth, registryHost: s.RegistryHost(), pinned: map[string]string{}, existing: map[string]bool{}, legacy: legacy, restored: restored, data: data}
	p.moves = map[string]bool{}
	for t, n := range current {
		if plan[t] != "" && plan[t] != n {
			p.moves[t] = true
		}
	}
	for t := range current {
		p.existing[t] = true
	}
	fresh := platform.NewTenants(s, p.existing)
	p.dbWithin, p.appWithin = platform.StartWait(dbWait, fresh), platform.StartWait(appWait, fresh)
	if err := p.pin(ctx.Context(), s); err != nil {
		return nil, err
	}
	return p, nil
}

// pin resolves every image reference the services run that has no digest
// to its digest in its registry now, as `docker service create` does: the
// nodes run one and the same image, and the provider, which reads services
// back with the digest, sees no change where there is none. A tag moved in
// the registry shows as a change in the next preview.
func (p *Platform) pin(ctx context.Context, s spec.Stack) error {
	refs := map[string]string{s.PostgresImage: "polls:postgresImage"}
	for _, t := range s.Tenants {
		if t.Image != "" {
			refs[t.Image] = "polls:tenants." + t.Name + ".image"
		}
	}
	var problems []string
	for _, ref := range slices.Sorted(maps.Keys(refs)) {
		if strings.Contains(ref, "@") {
			p.pinned[ref] = ref
			continue
		}
		var auth *dockerapi.RegistryAuth
		if a := p.registryAuth; a != nil && strings.HasPrefix(ref, p.registryHost+"/") {
			auth = &dockerapi.RegistryAuth{Username: a.Username, Password: a.Password, ServerAddress: p.registryHost}
		}
		digest, err := p.Engine.Digest(ctx, ref, auth)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s cannot be found in its registry (%v): on Swarm every node pulls it, so push it to a registry the nodes reach, e.g. polls:registry", refs[ref], ref, err))
			continue
		}
		name, _, _ := strings.Cut(ref, "@")
		p.pinned[ref] = name + "@" + digest
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid stack config (nothing was changed):\n%s", strings.Join(problems, "\n"))
	}
	return nil
}

// image returns the reference a service runs for ref: pinned to its digest
// where New resolved one.
func (p *Platform) image(ref pulumi.StringInput) pulumi.StringInput {
	if s, known := ref.(pulumi.String); known {
		if pinned, ok := p.pinned[string(s)]; ok {
			return pulumi.String(pinned)
		}
	}
	return ref
}

// Declare registers what the tenants share: the attachable overlay network
// the router (a container) and every app (a service) meet on.
func (p *Platform) Declare(ctx *pulumi.Context, opts ...pulumi.ResourceOption) error {
	edge, err := docker.NewNetwork(ctx, "edge", &docker.NetworkArgs{
		Name:       pulumi.String(p.prefix + "-edge"),
		Driver:     pulumi.String("overlay"),
		Attachable: pulumi.Bool(true),
	}, append(opts, platform.Named)...)
	if err != nil {
		return fmt.Errorf("edge network: %w", err)
	}
	p.Edge = edge.Name
	return nil
}

// EdgeNetwork is the name of the network the router and every app share.
func (p *Platform) EdgeNetwork() pulumi.StringOutput { return p.Edge }

// Retire has nothing to do: Swarm stops a service's old tasks itself, one
// at a time, as the new ones turn healthy.
func (p *Platform) Retire(_ *pulumi.Context, _ string, routed pulumi.StringOutput) pulumi.StringOutput {
	return routed
}

// RemoteApps is true: app tasks run on other nodes too, and a node that
// is lost (power, kernel, network) closes nothing.
func (p *Platform) RemoteApps() bool { return true }

// AppliedRestore is the restore the tenant's database service was created
// for, or "".
func (p *Platform) AppliedRestore(tenant string) string { return p.restored[tenant] }

// Existing reports whether the tenant's database service was on the
// cluster before this update: the tenant was deployed.
func (p *Platform) Existing(tenant string) bool { return p.existing[tenant] }

// LegacyPasswords reports whether the tenant's database service was on the
// cluster without contract.LabelSecrets: an earlier version deployed the
// tenant, with its passwords as random.RandomPassword resources.
func (p *Platform) LegacyPasswords(tenant string) bool { return p.legacy[tenant] }

// Network declares the tenant's overlay network: internal (no way out of
// the cluster), so only its own database, migration and app are on it, and
// attachable, so the migration container can join it. Its subnet comes
// from the cluster's address pool, which Swarm manages cluster-wide.
func (p *Platform) Network(ctx *pulumi.Context, t tenants.Parts) (pulumi.StringOutput, error) {
	n, err := docker.NewNetwork(ctx, t.Tenant.Name+"-net", &docker.NetworkArgs{
		Name:       pulumi.String(t.Name("net")),
		Driver:     pulumi.String("overlay"),
		Internal:   pulumi.Bool(true),
		Attachable: pulumi.Bool(true),
		Labels: docker.NetworkLabelArray{
			docker.NetworkLabelArgs{Label: pulumi.String("polls.tenant"), Value: pulumi.String(t.Tenant.Name)},
		},
	}, append(t.Opts, platform.Named)...)
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	return n.Name, nil
}

// Migration runs the tenant's migration as a container on the manager,
// or, with polls:migrations app, leaves it to the app's tasks (App).
func (p *Platform) Migration(ctx *pulumi.Context, t tenants.Parts, network, dbReady pulumi.StringOutput) (pulumi.StringOutput, error) {
	if platform.MigratesInApp(t) {
		return platform.MigrationInApp(dbReady), nil
	}
	return platform.Migration(ctx, t, network, dbReady)
}

// Backup declares the tenant's backup agent: a container on the manager,
// attached to the tenant's overlay network (platform.BackupAgent).
func (p *Platform) Backup(ctx *pulumi.Context, t tenants.Parts, network pulumi.StringOutput) error {
	return platform.BackupAgent(ctx, t, network)
}

// running resolves once service s runs every replica of the spec declared
// with image and, if not "", the digest of its task template in SpecEnv
// (see platform.Gate), then runs after, if any.
func (p *Platform) running(ctx *pulumi.Context, what string, s *docker.Service, image, digest pulumi.StringInput, within time.Duration, after func(context.Context) error) pulumi.StringOutput {
	return platform.Gate(ctx, what, func(ctx context.Context, v []any) error {
		want := dockerapi.Declared{Image: fmt.Sprint(v[1])}
		if d := fmt.Sprint(v[2]); d != "" {
			want.Env = map[string]string{SpecEnv: d}
		}
		if err := p.Engine.WaitService(ctx, fmt.Sprint(v[0]), want, within); err != nil {
			return err
		}
		if after != nil {
			return after(ctx)
		}
		return nil
	}, "running", s.ID(), image, digest)
}

// SpecEnv is the variable of the app's environment that carries the
// digest of the rest of its declared task template (specDigest). Swarm
// rolls a failed update back by putting the previous spec back whole: the
// variable then says the declared template is not the one running, even
// when the change kept the image (a rotated secret, a changed setting).
//
// It is in the environment because that is part of the task template,
// which Swarm rolls back, and a change of it updates the service in place;
// the provider replaces a service, delete-first, for any change of its
// labels. It changes only with the rest of the template, so it never
// restarts a task by itself.
const SpecEnv = "POLLS_SPEC"

// specDigest is the digest of a declared task template: it changes with
// anything that makes Swarm replace the service's tasks, and with nothing
// else (a service's labels and update settings are outside it).
func specDigest(task docker.ServiceTaskSpecArgs) pulumi.StringOutput {
	return task.ToServiceTaskSpecOutput().ApplyT(func(ts docker.ServiceTaskSpec) (string, error) {
		b, err := json.Marshal(ts)
		if err != nil {
			return "", fmt.Errorf("digest of the task template: %w", err)
		}
		sum := sha256.Sum256(b)
		return hex.EncodeToString(sum[:16]), nil
	}).(pulumi.StringOutput)
}

// secret declares a Docker secret holding value and returns how a service
// mounts it at file. Secrets are immutable: a new value is a new secret
// (generated name, created first), the services that use it roll to it, and
// the old one is deleted last.
func secret(ctx *pulumi.Context, t tenants.Parts, logical, file string, value pulumi.StringOutput) (docker.ServiceTaskSpecContainerSpecSecretArgs, error) {
	data := pulumi.ToSecret(value.ApplyT(func(v string) string {
		return base64.StdEncoding.EncodeToString([]byte(v))
	})).(pulumi.StringOutput)
	s, err := docker.NewSecret(ctx, t.Tenant.Name+"-"+logical, &docker.SecretArgs{
		Data: data,
		Labels: docker.SecretLabelArray{
			docker.SecretLabelArgs{Label: pulumi.String("polls.stack"), Value: pulumi.String(t.Prefix)},
			docker.SecretLabelArgs{Label: pulumi.String("polls.tenant"), Value: pulumi.String(t.Tenant.Name)},
		},
	}, append(t.Opts, platform.CreateFirst)...)
	if err != nil {
		return docker.ServiceTaskSpecContainerSpecSecretArgs{}, fmt.Errorf("secret %s: %w", logical, err)
	}
	// Every secret file lives in /run/secrets, where Swarm mounts them.
	return docker.ServiceTaskSpecContainerSpecSecretArgs{
		SecretId: s.ID(), SecretName: s.Name, FileName: pulumi.String(path.Base(file)),
	}, nil
}

// auth is how the nodes log in to polls:registry to pull image, if the
// image is there and the registry needs it.
func (p *Platform) auth(image pulumi.StringInput) docker.ServiceAuthPtrInput {
	if p.registryAuth == nil {
		return nil
	}
	if s, known := image.(pulumi.String); known && !strings.HasPrefix(string(s), p.registryHost+"/") {
		return nil
	}
	return docker.ServiceAuthArgs{
		ServerAddress: pulumi.String(p.registryHost),
		Username:      pulumi.String(p.registryAuth.Username),
		Password:      pulumi.ToSecret(pulumi.String(p.registryAuth.Password)).(pulumi.StringOutput),
	}
}

// labels converts a part's labels for a service, sorted by label as the
// provider reads them back: another order is a change on every preview.
func labels(t tenants.Parts, role string, extra map[string]pulumi.StringInput) docker.ServiceLabelArray {
	all := map[string]pulumi.StringInput{}
	for k, v := range t.Labels(role) {
		all[k] = pulumi.String(v)
	}
	maps.Copy(all, extra)
	out := docker.ServiceLabelArray{}
	for _, k := range slices.Sorted(maps.Keys(all)) {
		out = append(out, docker.ServiceLabelArgs{Label: pulumi.String(k), Value: all[k]})
	}
	return out
}

// env turns KEY=value lines into the service's environment map.
func env(lines []string) pulumi.StringMap {
	m := pulumi.StringMap{}
	for _, l := range lines {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = pulumi.String(v)
		}
	}
	return m
}

func memoryBytes(mb int) pulumi.IntPtrInput {
	if mb == 0 {
		return nil
	}
	return pulumi.Int(mb << 20)
}
