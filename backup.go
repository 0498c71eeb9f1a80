package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/appbuild"
	"github.com/polls-tenants/polls/backups"
	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/spec"
	"github.com/polls-tenants/polls/tenants"
)

// BackupEngine is what the backups ask the Docker engine itself.
type BackupEngine interface {
	// Containers lists the containers carrying every label given.
	Containers(ctx context.Context, labels map[string]string) ([]dockerapi.ContainerSummary, error)
	// ReadFile reads a file of a container through the archive API.
	ReadFile(ctx context.Context, id, path string) ([]byte, error)
	// Exec runs a command in a running container.
	Exec(ctx context.Context, id string, cmd []string) (int, string, error)
}

// backupPlan is what the program learned from the engine about the
// tenants' backups before declaring anything.
type backupPlan struct {
	// agents are the tenants whose backup agent runs, by tenant.
	agents map[string]dockerapi.ContainerSummary
	// pending are the tenants whose configured restore the database has
	// not applied yet.
	pending map[string]bool
}

// planBackups lists the agents, and checks each pending restore against
// the backups that exist, refusing, all at once and before anything
// changes, a moment no backup covers. The agents' health is read later,
// beside the registrations (backupPlan.warnLater).
func planBackups(ctx *pulumi.Context, s spec.Stack, engine BackupEngine, prefix string, applied func(tenant string) string) (*backupPlan, error) {
	bp := &backupPlan{agents: map[string]dockerapi.ContainerSummary{}, pending: map[string]bool{}}
	if s.Platform == spec.PlatformSwarm && s.Backup.Repository.Kind == spec.RepositoryLocal {
		msg := fmt.Sprintf("polls:backupRepository is %s on the manager: the backups of a database on another node leave it, but those of a database on the manager stay on the manager's disk and are lost with it; use an SFTP repository (sftp://user@host/path) to keep every tenant's backups off its node", s.Backup.Repository.Path)
		if err := ctx.Log.Warn(msg, nil); err != nil {
			return nil, err
		}
	}
	list, err := engine.Containers(ctx.Context(), map[string]string{contract.LabelStack: prefix, contract.LabelRole: "backup"})
	if err != nil {
		return nil, fmt.Errorf("list the backup agents: %w", err)
	}
	for _, c := range list {
		bp.agents[c.Labels[contract.LabelTenant]] = c
	}

	var problems []string
	for _, t := range s.Tenants {
		if t.Restore == "" {
			continue
		}
		id := contract.RestoreID(t.Name, t.RestoreFrom, t.Restore)
		if applied(t.Name) == id {
			continue
		}
		bp.pending[t.Name] = true
		source := t.Name
		if t.RestoreFrom != "" {
			source = t.RestoreFrom
		}
		if a, ok := bp.agents[source]; !ok || a.State != "running" {
			// A tenant added back after its volume was lost has no agent
			// yet: its database waits for the new one, which reads the
			// same repository with the same key.
			msg := fmt.Sprintf("tenant %s: the backups of %s cannot be checked now (its backup agent is not running); the restore waits for the agent", t.Name, source)
			if err := ctx.Log.Warn(msg, nil); err != nil {
				return nil, err
			}
			continue
		}
		if p := checkRestore(ctx.Context(), engine, bp.agents[source], t, source, prefix); p != "" {
			problems = append(problems, p)
			continue
		}
		msg := fmt.Sprintf("tenant %s: restoring its database to %s from the backups of %s; its current data is backed up first and kept in its volume", t.Name, t.Restore, source)
		if err := ctx.Log.Info(msg, nil); err != nil {
			return nil, err
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("invalid stack config (nothing was changed):\n%s", strings.Join(problems, "\n"))
	}
	return bp, nil
}

// warnLater reads the agents' health once start is closed, beside
// whatever the program and the engine do meanwhile, and returns what
// waits for it and warns of every tenant whose backups are late or
// failing. Read before the first registration, the 100 state files of
// 100 tenants held every preview and update back by 3.0–4.6 s here (one
// archive call each, about 0.1 s of the engine's time); an update that
// adds a tenant starts them once the new tenant serves (newFirst), so
// they do not slow its path either.
func (bp *backupPlan) warnLater(ctx *pulumi.Context, engine BackupEngine, ts []spec.Tenant, prefix string, start <-chan struct{}) func() error {
	done := make(chan []string, 1)
	go func() {
		select {
		case <-start:
		case <-ctx.Context().Done():
		}
		done <- agentWarnings(ctx.Context(), engine, bp.agents, ts, prefix, time.Now())
	}()
	return func() error {
		for _, w := range <-done {
			if err := ctx.Log.Warn(w, nil); err != nil {
				return err
			}
		}
		return nil
	}
}

// agentWarnings names every tenant whose backups need attention, from its
// agent's state file (contract.AgentStateFile): what the agent found
// wrong, or that it is stuck or not running. The files are read a few at
// a time, one archive call each: no process starts in any container.
func agentWarnings(ctx context.Context, engine BackupEngine, agents map[string]dockerapi.ContainerSummary, ts []spec.Tenant, prefix string, now time.Time) []string {
	why := make([]string, len(ts))
	var wg sync.WaitGroup
	// Four at a time: the engine's own steps go on meanwhile.
	sem := make(chan struct{}, 4)
	for i, t := range ts {
		a, ok := agents[t.Name]
		switch {
		case !ok:
			continue
		case a.State != "running":
			why[i] = "its agent is " + a.State
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			b, err := engine.ReadFile(ctx, a.ID, contract.AgentStateFile)
			var st contract.AgentStatus
			if err == nil {
				err = json.Unmarshal(b, &st)
			}
			if err != nil {
				why[i] = fmt.Sprintf("its agent's state cannot be read (%v)", err)
				return
			}
			why[i] = strings.Join(st.Verdict(now), "; ")
		})
	}
	wg.Wait()
	var out []string
	for i, t := range ts {
		if why[i] != "" {
			out = append(out, fmt.Sprintf("tenant %s: backups need attention: %s (see `docker exec %s polls-agent backup status`)", t.Name, why[i], contract.AgentName(prefix, t.Name)))
		}
	}
	return out
}

// checkRestore says what is wrong with restoring t from source's backups,
// or "" if they cover the moment.
func checkRestore(ctx context.Context, engine BackupEngine, agent dockerapi.ContainerSummary, t spec.Tenant, source, prefix string) string {
	where := "polls:tenants." + t.Name + ".restore"
	code, out, err := engine.Exec(ctx, agent.ID, []string{contract.AgentBinary, "backup", "backups"})
	if err != nil || code != 0 {
		return fmt.Sprintf("%s: could not list the backups of %s (%v): %s", where, source, err, strings.TrimSpace(out))
	}
	var held struct {
		Generations []struct{ From, To time.Time }
		CaughtUp    time.Time
	}
	if err := json.Unmarshal([]byte(out), &held); err != nil {
		return fmt.Sprintf("%s: the backup agent of %s answered %q: %v", where, source, out, err)
	}
	gens := held.Generations
	if len(gens) == 0 {
		return fmt.Sprintf("%s: tenant %s has no backup yet: wait for its first base backup (`docker exec %s polls-agent backup status`)", where, source, contract.AgentName(prefix, source))
	}
	if t.Restore == spec.RestoreLatest {
		return ""
	}
	at, _ := time.Parse(time.RFC3339Nano, t.Restore)
	last := gens[len(gens)-1].To
	if held.CaughtUp.After(last) {
		last = held.CaughtUp
	}
	switch {
	case at.Before(gens[0].From):
		return fmt.Sprintf("%s: %s is before the oldest backup of %s, which restores to %s at the earliest: choose a later moment", where, t.Restore, source, gens[0].From.UTC().Format(time.RFC3339))
	case at.After(last):
		return fmt.Sprintf("%s: %s is after the newest archived log of %s (%s): choose an earlier moment, or latest", where, t.Restore, source, last.UTC().Format(time.RFC3339))
	}
	return ""
}

// agentBuild declares a build of a target of agent/ on
// polls:postgresImage. The Go build takes the module proxy settings of
// polls:appBuildArgs, never the app's own args (a release does not rebuild
// it). Pushed to polls:registry when push is set.
func agentBuild(ctx *pulumi.Context, s spec.Stack, prefix, name, target string, push bool, builder appbuild.Builder, opts ...pulumi.ResourceOption) (*docker.Image, error) {
	args := pulumi.ToStringMap(appbuild.BuildArgs(builder, prefix))
	args["POSTGRES_IMAGE"] = pulumi.String(s.PostgresImage)
	for _, k := range []string{"GO_IMAGE", "GOPROXY", "GOSUMDB"} {
		if v, ok := s.AppBuildArgs[k]; ok {
			args[k] = pulumi.String(v)
		}
	}
	ia := &docker.ImageArgs{
		ImageName: pulumi.String(imageName(s, prefix, name, push) + ":latest"),
		SkipPush:  pulumi.Bool(!push),
		Build: docker.DockerBuildArgs{
			Context:        pulumi.String("agent"),
			Target:         pulumi.String(target),
			Args:           args,
			Network:        optional(s.AppBuildNetwork),
			BuilderVersion: builderVersion(builder),
		},
	}
	if push {
		ia.Registry = registry(s)
	}
	return docker.NewImage(ctx, name+"-image", ia, opts...)
}

// dbImage declares the databases' image (target db); on Swarm every node
// pulls it from polls:registry.
func dbImage(ctx *pulumi.Context, s spec.Stack, prefix string, builder appbuild.Builder, opts ...pulumi.ResourceOption) (*docker.Image, error) {
	img, err := agentBuild(ctx, s, prefix, "db", "db", s.Platform == spec.PlatformSwarm, builder, opts...)
	if err != nil {
		return nil, fmt.Errorf("database image: %w", err)
	}
	return img, nil
}

// agentImage declares the agents' image (target agent): the backup agents,
// the gateway and the router's certificate companion run it, all on the
// engine that builds it (on Swarm, the manager), so it is never pushed.
func agentImage(ctx *pulumi.Context, s spec.Stack, prefix string, builder appbuild.Builder, opts ...pulumi.ResourceOption) (*docker.Image, error) {
	img, err := agentBuild(ctx, s, prefix, "agent", "agent", false, builder, opts...)
	if err != nil {
		return nil, fmt.Errorf("agent image: %w", err)
	}
	return img, nil
}

// imageName is the repository an image of the stack is tagged with: in
// polls:registry when pushed.
func imageName(s spec.Stack, prefix, name string, pushed bool) string {
	if pushed {
		return s.Registry + "/" + prefix + "-" + name
	}
	return prefix + "-" + name
}

// registry is polls:registry with its credentials, for pushing.
func registry(s spec.Stack) docker.RegistryArgs {
	r := docker.RegistryArgs{Server: pulumi.String(s.RegistryHost())}
	if a := s.RegistryAuth; a != nil {
		r.Username = pulumi.String(a.Username)
		r.Password = pulumi.ToSecret(pulumi.String(a.Password)).(pulumi.StringOutput)
	}
	return r
}

// declareBackups declares the gateway and returns each tenant's share of
// the stack's backups; nil when backups are off.
func declareBackups(ctx *pulumi.Context, s spec.Stack, engine BackupEngine, prefix string, bp *backupPlan, moves func(string) bool, dbImage, agentImage *docker.Image, opts ...pulumi.ResourceOption) (map[string]*tenants.StackBackup, *backups.Backups, error) {
	if s.Backup == nil {
		return nil, nil, nil
	}
	names := make([]string, len(s.Tenants))
	for i, t := range s.Tenants {
		names[i] = t.Name
	}
	b, err := backups.New(ctx, backups.Args{Backup: *s.Backup, Prefix: prefix, Tenants: names, AgentImage: agentImage.RepoDigest}, opts...)
	if err != nil {
		return nil, nil, err
	}
	if b.Generated {
		if err := ctx.Log.Warn("polls:backupKey is not set: the tenants' backups are encrypted with a key kept only in this stack's state, lost with it (and by `pulumi destroy`); keep it outside the stack: `pulumi config set --secret polls:backupKey \"$(pulumi stack output backupKey --show-secrets)\"`", nil); err != nil {
			return nil, nil, err
		}
		ctx.Export("backupKey", b.Key)
	}
	per := map[string]*tenants.StackBackup{}
	for _, t := range s.Tenants {
		sb := &tenants.StackBackup{Spec: *s.Backup, Key: b.Key, Network: b.Network, Slots: b.Slots, DBImage: dbImage.RepoDigest, AgentImage: agentImage.RepoDigest}
		for _, other := range s.Tenants {
			if other.RestoreFrom == t.Name {
				sb.Copies = append(sb.Copies, other.Name)
			}
		}
		if agent, ok := bp.agents[t.Name]; ok && bp.pending[t.Name] && agent.State == "running" && !moves(t.Name) {
			sb.PreRestore = preRestoreBackup(ctx, engine, t.Name, agent.ID)
		}
		per[t.Name] = sb
	}
	return per, b, nil
}

// preRestoreBackup resolves once the tenant's agent took a base backup of
// the database as it is, so that restoring to the wrong moment can itself
// be undone; the database is replaced only after it.
func preRestoreBackup(ctx *pulumi.Context, engine BackupEngine, tenant, agentID string) pulumi.StringOutput {
	return platform.Gate(ctx, "tenant "+tenant+": backup before the restore", func(wctx context.Context, _ []any) error {
		code, out, err := engine.Exec(wctx, agentID, []string{contract.AgentBinary, "backup", "now"})
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("failed (exit %d): %s; the restore did not start, the database is as it was", code, strings.TrimSpace(out))
		}
		var base struct{ End time.Time }
		if json.Unmarshal([]byte(out), &base) == nil && !base.End.IsZero() {
			_ = ctx.Log.Info(fmt.Sprintf("tenant %s: its data before the restore is backed up: restore to %s to get it back", tenant, base.End.UTC().Format(time.RFC3339)), nil)
		}
		return nil
	}, "backed-up", pulumi.String(agentID))
}
