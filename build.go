package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"

	"github.com/polls-tenants/polls/appbuild"
	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/spec"
)

// buildEngine is what the program asks the engine about the app's builds.
type buildEngine interface {
	Ping(ctx context.Context) (dockerapi.Ping, error)
	BuildLeftovers(ctx context.Context, key, value string) ([]dockerapi.BuildContainer, []dockerapi.BuildImage, error)
	RemoveContainer(ctx context.Context, id string) error
	RemoveImage(ctx context.Context, id string) error
	TagImage(ctx context.Context, id, repo, tag string) error
}

// chooseBuilder asks the engine whether it has BuildKit and applies
// polls:appBuilder.
func chooseBuilder(ctx context.Context, s spec.Stack, engine buildEngine) (appbuild.Builder, error) {
	p, err := engine.Ping(ctx)
	if err != nil {
		return "", fmt.Errorf("polls:appBuilder: ask the engine for BuildKit: %w", err)
	}
	b, err := appbuild.Choose(s.AppBuilder, appbuild.Engine{OSType: p.OSType, APIVersion: p.APIVersion, BuilderVersion: p.BuilderVersion})
	if err != nil {
		return "", fmt.Errorf("invalid stack config (nothing was changed):\n%w", err)
	}
	return b, nil
}

// builderVersion is the provider's name of a builder.
func builderVersion(b appbuild.Builder) docker.BuilderVersion {
	if b == appbuild.Legacy {
		return docker.BuilderVersionBuilderV1
	}
	return docker.BuilderVersionBuilderBuildKit
}

// cleanBuilds removes what the stack's builds left on the engine: the step
// containers of legacy builds and untagged images no container uses (half
// builds, build stages, earlier releases). After a successful build
// (keepCache) the newest build stage is tagged repo:build-cache first, so
// the legacy builder's next build reuses its compiled dependencies.
func cleanBuilds(ctx context.Context, engine buildEngine, prefix, repo string, keepCache bool) error {
	containers, images, err := engine.BuildLeftovers(ctx, appbuild.Label, prefix)
	if err != nil {
		return fmt.Errorf("list the app build's leftovers: %w", err)
	}
	cs := make([]appbuild.Container, len(containers))
	for i, c := range containers {
		cs[i] = appbuild.Container{ID: c.ID, State: c.State, Command: c.Command, Labels: c.Labels}
	}
	is := make([]appbuild.Image, len(images))
	for i, img := range images {
		is[i] = appbuild.Image{ID: img.ID, Created: img.Created, Labels: img.Labels}
	}
	plan := appbuild.Plan(prefix, cs, is, keepCache)
	var errs []error
	for _, id := range plan.Containers {
		if err := engine.RemoveContainer(ctx, id); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("remove build step container %.12s: %w", id, err))
		}
	}
	if plan.Cache != "" {
		if err := engine.TagImage(ctx, plan.Cache, repo, appbuild.CacheTag); err != nil {
			errs = append(errs, fmt.Errorf("tag the build cache %s:%s: %w", repo, appbuild.CacheTag, err))
		}
	}
	// Listed again: tagging the cache untags the previous one.
	if _, images, err = engine.BuildLeftovers(ctx, appbuild.Label, prefix); err != nil {
		return errors.Join(append(errs, fmt.Errorf("list the app build's images: %w", err))...)
	}
	for _, img := range images {
		// In use (409) or already gone with a child (404): not ours to force.
		if err := engine.RemoveImage(ctx, img.ID); err != nil && !conflict(err) && !notFound(err) {
			errs = append(errs, fmt.Errorf("remove untagged image %.19s: %w", img.ID, err))
		}
	}
	return errors.Join(errs...)
}

func conflict(err error) bool { return dockerapi.IsConflict(err) }

func notFound(err error) bool { return dockerapi.IsNotFound(err) }

// imageRepo is an image name without its tag.
func imageRepo(name string) string {
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[:i]
	}
	return name
}

// The program cannot clean up after a failed build itself: the engine ends
// it the moment the update fails. So before a legacy build it starts a
// watcher, this same binary in its own session (out of the process group
// the language host is killed with), holding the read end of a pipe. When
// the program exits without saying the build succeeded, the watcher sees
// the pipe close and removes what the failed build left.
const watcherEnv = "POLLS_BUILD_WATCHER"

// watcher is the running watcher: close it with done once the build
// succeeded and was cleaned up.
type watcher struct{ w io.WriteCloser }

// watchBuilds starts the watcher; tests replace it.
var watchBuilds = startWatcher

// startWatcher starts the watcher for the stack's builds on host.
func startWatcher(host, prefix, repo string) (*watcher, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), watcherEnv+"="+strings.Join([]string{host, prefix, repo}, "\n"))
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	r.Close()
	go func() { _ = cmd.Wait() }()
	return &watcher{w: w}, nil
}

// done tells the watcher the build succeeded: it exits without cleaning.
func (w *watcher) done() {
	if w.w == nil {
		return
	}
	_, _ = io.WriteString(w.w, "ok\n")
	_ = w.w.Close()
}

// runWatcher is the watcher's main: it waits for the program to end, and
// unless told the build succeeded, cleans up after the failed build.
func runWatcher(args string) int {
	parts := strings.SplitN(args, "\n", 3)
	if len(parts) != 3 {
		return 2
	}
	msg, _ := io.ReadAll(os.Stdin)
	if strings.TrimSpace(string(msg)) == "ok" {
		return 0
	}
	engine, err := dockerapi.New(parts[0])
	if err != nil {
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), watcherTimeout)
	defer cancel()
	return cleanAfterFailure(ctx, engine, parts[1], parts[2])
}

// watcherTimeout bounds how long the watcher waits for a build step the
// failed update left running (its build was cancelled with the update).
const watcherTimeout = 2 * time.Minute

// cleanAfterFailure waits until no step of the stack's builds runs, then
// cleans up, keeping no half-built stage as the cache.
func cleanAfterFailure(ctx context.Context, engine buildEngine, prefix, repo string) int {
	for {
		containers, _, err := engine.BuildLeftovers(ctx, appbuild.Label, prefix)
		if err != nil {
			return 1
		}
		running := false
		for _, c := range containers {
			step := appbuild.IsStep(prefix, appbuild.Container{ID: c.ID, State: c.State, Command: c.Command, Labels: c.Labels})
			running = running || (c.State == "running" && step)
		}
		if !running {
			break
		}
		select {
		case <-ctx.Done():
			return 1
		case <-time.After(time.Second):
		}
	}
	if err := cleanBuilds(ctx, engine, prefix, repo, false); err != nil {
		return 1
	}
	return 0
}
