package main

import (
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/internal/fakes"
)

// watchers records the build watchers the program started under mocks,
// instead of starting this test binary again.
var watchers struct {
	sync.Mutex
	started []string
}

func init() {
	watchBuilds = func(host, prefix, repo string) (*watcher, error) {
		watchers.Lock()
		defer watchers.Unlock()
		watchers.started = append(watchers.started, prefix+" "+repo)
		return &watcher{}, nil
	}
}

// watchersStarted returns and forgets the watchers started so far.
func watchersStarted() []string {
	watchers.Lock()
	defer watchers.Unlock()
	w := watchers.started
	watchers.started = nil
	return w
}

// TestBuilderChoice ensures the app is built with BuildKit wherever the
// engine has it, with the legacy builder where it has not or where
// polls:appBuilder says so (then with a watcher for a failed build), that
// every build carries the stack's label, and that asking BuildKit of an
// engine without it registers nothing and names the key and the fix.
func TestBuilderChoice(t *testing.T) {
	tests := []struct {
		name    string
		setting string
		ping    dockerapi.Ping
		want    string // the Image's builderVersion
		watched bool
	}{
		{"default on a 20.10 engine", "", dockerapi.Ping{OSType: "linux", APIVersion: "1.41"}, "BuilderBuildKit", false},
		{"default where BuildKit is the default", "", dockerapi.Ping{OSType: "linux", APIVersion: "1.47", BuilderVersion: "2"}, "BuilderBuildKit", false},
		{"default where daemon.json turns it off", "auto", dockerapi.Ping{OSType: "linux", APIVersion: "1.41", BuilderVersion: "1"}, "BuilderV1", true},
		{"default before Docker 18.09", "", dockerapi.Ping{OSType: "linux", APIVersion: "1.38"}, "BuilderV1", true},
		{"legacy asked for", "legacy", dockerapi.Ping{OSType: "linux", APIVersion: "1.41"}, "BuilderV1", true},
		{"buildkit asked for", "buildkit", dockerapi.Ping{OSType: "linux", APIVersion: "1.41"}, "BuilderBuildKit", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMocks()
			m.PingAnswer = tt.ping
			cfg := map[string]string{"appBuildArgs": `{"VERSION":"7"}`}
			if tt.setting != "" {
				cfg["appBuilder"] = tt.setting
			}
			if err := run(t, m, cfg); err != nil {
				t.Fatalf("program: %v", err)
			}
			build := m.All()["docker:index/image:Image::app"]["build"].ObjectValue()
			if got := build["builderVersion"].StringValue(); got != tt.want {
				t.Errorf("builderVersion = %q; want %q", got, tt.want)
			}
			args := build["args"].ObjectValue()
			images := 0
			for urn, inputs := range m.All() {
				if !strings.HasPrefix(urn, "docker:index/image:Image::") {
					continue
				}
				images++
				imageArgs := inputs["build"].ObjectValue()["args"].ObjectValue()
				if got := imageArgs["POLLS_BUILD"].StringValue(); got != "polls-dev" {
					t.Errorf("%s: build arg POLLS_BUILD = %q; want the stack's prefix polls-dev", urn, got)
				}
				// Every step labelled for the legacy builder, whose step
				// containers the program removes; for BuildKit the arg
				// would only keep stacks from sharing cached steps.
				steps, set := imageArgs["POLLS_BUILD_STEPS"]
				if legacy := tt.want == "BuilderV1"; legacy && steps.StringValue() != "polls-dev" {
					t.Errorf("%s: a legacy build with POLLS_BUILD_STEPS = %v; want the stack's prefix polls-dev", urn, steps)
				} else if !legacy && set {
					t.Errorf("%s: a BuildKit build with POLLS_BUILD_STEPS = %v; want it unset, so that stacks share cached steps", urn, steps)
				}
			}
			if images < 2 {
				t.Errorf("%d images built; want the app's and the agent's at least", images)
			}
			if got := args["VERSION"].StringValue(); got != "7" {
				t.Errorf("build arg VERSION = %q; want polls:appBuildArgs' 7", got)
			}
			started := watchersStarted()
			if tt.watched && (len(started) != 1 || started[0] != "polls-dev polls-dev-app") {
				t.Errorf("watchers started = %q; want one for polls-dev's repository polls-dev-app", started)
			}
			if !tt.watched && len(started) > 0 {
				t.Errorf("a BuildKit build started watchers %q; it leaves nothing to watch for", started)
			}
		})
	}

	m := newMocks()
	m.PingAnswer = dockerapi.Ping{OSType: "linux", APIVersion: "1.41", BuilderVersion: "1"}
	err := run(t, m, map[string]string{"appBuilder": "buildkit"})
	if err == nil || !strings.Contains(err.Error(), `polls:appBuilder: "buildkit", but the Docker engine has no BuildKit (its daemon.json sets features.buildkit to false): set it to "auto" or "legacy"`) {
		t.Errorf("error = %v; want one naming polls:appBuilder, why and the fix", err)
	}
	counts := m.CountByType()
	delete(counts, "pulumi:pulumi:Stack")
	if len(counts) != 0 {
		t.Errorf("resources registered for an engine without the BuildKit asked for: %v", counts)
	}
}

// TestLegacyBuildCleanup ensures an update removes what earlier builds
// left before it builds, and after a successful legacy build removes its
// stopped step containers, keeps its newest build stage as the tagged
// cache and removes every other untagged image of the stack's builds,
// leaving running containers and the stack's own (whose image gives them
// the build label) alone.
func TestLegacyBuildCleanup(t *testing.T) {
	m := newMocks()
	m.Leftovers = map[string]fakes.BuildSet{"polls-dev": {
		Containers: []dockerapi.BuildContainer{
			{ID: "failed-step", State: "exited", Command: "/bin/sh -c 'go mod download'", Labels: map[string]string{"polls.build": "polls-dev"}},
			{ID: "thor-migrate", State: "exited", Command: "/usr/local/bin/polls migrate", Labels: map[string]string{"polls.build": "polls-dev", "polls.stack": "polls-dev"}},
		},
		Images: []dockerapi.BuildImage{{ID: "half-built", Created: 50, Labels: map[string]string{"polls.build": "polls-dev", "polls.build.stage": "build"}}},
	}}
	m.BuildLeaves = &fakes.BuildSet{
		Containers: []dockerapi.BuildContainer{
			{ID: "run-step", State: "exited", Command: "/bin/sh -c 'go build'", Labels: map[string]string{"polls.build": "polls-dev"}},
			{ID: "copy-step", State: "created", Command: "/bin/sh -c '#(nop) COPY dir:1a in /src '", Labels: map[string]string{"polls.build": "polls-dev"}},
			{ID: "busy", State: "running", Command: "/bin/sh -c 'go build'", Labels: map[string]string{"polls.build": "polls-dev"}},
			{ID: "arg-step", State: "created", Command: `/bin/sh -c '#(nop) ' 'ARG POLLS_BUILD'`},
			{ID: "someone-elses", State: "created", Command: "nginx -g 'daemon off;'"},
			{ID: "other-stack", State: "exited", Labels: map[string]string{"polls.build": "polls-prod"}},
		},
		Images: []dockerapi.BuildImage{
			{ID: "old-stage", Created: 100, Labels: map[string]string{"polls.build": "polls-dev", "polls.build.stage": "build"}},
			{ID: "new-stage", Created: 200, Labels: map[string]string{"polls.build": "polls-dev", "polls.build.stage": "build"}},
			{ID: "old-release", Created: 150, Labels: map[string]string{"polls.build": "polls-dev"}},
		},
	}
	if err := run(t, m, map[string]string{"appBuilder": "legacy"}); err != nil {
		t.Fatalf("program: %v", err)
	}
	watchersStarted()
	want := []string{
		// Before the build: a failed build's leftovers, no cache kept.
		"list polls.build=polls-dev", "rm failed-step", "list polls.build=polls-dev", "rmi half-built",
		// After it: its steps, the newest stage as the cache, the rest.
		"list polls.build=polls-dev", "rm arg-step", "rm copy-step", "rm run-step", "tag new-stage polls-dev-app:build-cache",
		"list polls.build=polls-dev", "rmi old-stage", "rmi old-release",
	}
	if diff := cmp.Diff(want, m.Builds); diff != "" {
		t.Errorf("build cleanup calls (-want +got):\n%s", diff)
	}
}
