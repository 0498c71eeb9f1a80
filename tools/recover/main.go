// Command recover removes what an interrupted `pulumi up` left on the Docker
// engine that the stack's state does not hold (package recovery says what
// and why). scripts/recover.sh runs it around the update it runs again:
//
//	pulumi stack export --file state.json
//	pulumi refresh --clear-pending-creates --target … (recover -state state.json -refresh-targets)
//	pulumi stack export --file state.json
//	recover -prefix polls-dev -state state.json -phase before
//	pulumi up
//	pulumi stack export --file state.json
//	recover -prefix polls-dev -state state.json -phase after
//
// -dry-run prints the plan and removes nothing. It prints one line per
// object removed, and exits non-zero, after trying every object, when any
// could not be removed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/recovery"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "recover:", err)
		os.Exit(1)
	}
}

// grace is how long a running container gets to stop, as the program's
// DestroyGraceSeconds gives its apps to drain requests in flight.
const grace = 10

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("recover", flag.ContinueOnError)
	prefix := fs.String("prefix", "", "the stack's prefix: <project>-<stack>, e.g. polls-dev")
	statePath := fs.String("state", "", "the stack's state, as `pulumi stack export --file` writes it")
	phase := fs.String("phase", "", "before (the update runs again) or after (it succeeded)")
	host := fs.String("host", "", "the Docker engine (polls:dockerHost; default DOCKER_HOST, else the local socket)")
	swarm := fs.Bool("swarm", false, "the stack runs on Swarm (polls:platform swarm): services and secrets too")
	dryRun := fs.Bool("dry-run", false, "print the plan, remove nothing")
	targets := fs.Bool("refresh-targets", false, "print the URNs pulumi refresh must read back, one per line, and nothing else")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *targets && *statePath != "" {
		export, err := os.ReadFile(*statePath)
		if err != nil {
			return err
		}
		urns, err := recovery.RefreshTargets(export)
		for _, u := range urns {
			fmt.Fprintln(out, u)
		}
		return err
	}
	if *prefix == "" || *statePath == "" || (*phase != "before" && *phase != "after") {
		return errors.New("usage: recover -prefix PREFIX -state FILE -phase before|after [-host URL] [-swarm] [-dry-run], or recover -state FILE -refresh-targets")
	}
	export, err := os.ReadFile(*statePath)
	if err != nil {
		return err
	}
	state, err := recovery.StateIDs(export)
	if err != nil {
		return err
	}
	engine, err := dockerapi.New(*host)
	if err != nil {
		return err
	}
	defer engine.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	objs, err := list(ctx, engine, *prefix, *swarm)
	if err != nil {
		return fmt.Errorf("list the stack's objects on %s: %w", engine.Host(), err)
	}
	plan := recovery.Orphans(*prefix, state, objs)
	todo := plan.Before
	if *phase == "after" {
		// What the update made again may have left nothing of Before, but
		// an object listed then and not removed is tried once more.
		todo = append(plan.Before, plan.After...)
	}
	var errs []error
	for _, o := range todo {
		if *dryRun {
			fmt.Fprintf(out, "would remove %s %s (%.12s)\n", o.Kind, o.Name, o.ID)
			continue
		}
		if err := remove(ctx, engine, o); err != nil && !dockerapi.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove %s %s (%.12s): %w", o.Kind, o.Name, o.ID, err))
			continue
		}
		fmt.Fprintf(out, "removed %s %s (%.12s)\n", o.Kind, o.Name, o.ID)
	}
	if *phase == "before" && len(plan.After) > 0 {
		fmt.Fprintf(out, "%d left until the update has run again (a route may point at a running app; a service may use a secret)\n", len(plan.After))
	}
	return errors.Join(errs...)
}

// list reads every object that may be the stack's: its labelled containers
// (and, on Swarm, services and secrets) and every network, whose owner
// package recovery tells by name.
func list(ctx context.Context, engine *dockerapi.Client, prefix string, swarm bool) ([]recovery.Object, error) {
	var objs []recovery.Object
	stack := map[string]string{contract.LabelStack: prefix}
	cs, err := engine.Containers(ctx, stack)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		running := c.State == "running" || c.State == "restarting"
		objs = append(objs, recovery.Object{Kind: recovery.Container, ID: c.ID, Name: c.Name, Labels: c.Labels, Running: running})
	}
	ns, err := engine.Networks(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range ns {
		objs = append(objs, recovery.Object{Kind: recovery.Network, ID: n.ID, Name: n.Name, Labels: n.Labels})
	}
	if !swarm {
		return objs, nil
	}
	ss, err := engine.Services(ctx, stack)
	if err != nil {
		return nil, err
	}
	for _, s := range ss {
		objs = append(objs, recovery.Object{Kind: recovery.Service, ID: s.ID, Name: s.Name, Labels: s.Labels})
	}
	secrets, err := engine.Secrets(ctx, stack)
	if err != nil {
		return nil, err
	}
	for _, s := range secrets {
		objs = append(objs, recovery.Object{Kind: recovery.Secret, ID: s.ID, Name: s.Name, Labels: s.Labels})
	}
	return objs, nil
}

func remove(ctx context.Context, engine *dockerapi.Client, o recovery.Object) error {
	switch o.Kind {
	case recovery.Container:
		return engine.StopAndRemoveContainer(ctx, o.ID, grace)
	case recovery.Service:
		return engine.RemoveService(ctx, o.ID)
	case recovery.Secret:
		return engine.RemoveSecret(ctx, o.ID)
	case recovery.Network:
		return engine.RemoveNetwork(ctx, o.ID)
	}
	return fmt.Errorf("unknown kind %q", o.Kind)
}
