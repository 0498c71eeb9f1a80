package appbuild

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestChoose ensures "auto" picks BuildKit on every engine that has it and
// the legacy builder on the others, that a setting is obeyed, and that
// BuildKit asked of an engine without it is refused with the reason and
// the fix.
func TestChoose(t *testing.T) {
	debian := Engine{OSType: "linux", APIVersion: "1.41"}
	tests := []struct {
		name    string
		setting string
		engine  Engine
		want    Builder
		err     string
	}{
		{"auto on 20.10, no daemon setting", "auto", debian, BuildKit, ""},
		{"auto where BuildKit is the default", "auto", Engine{OSType: "linux", APIVersion: "1.47", BuilderVersion: "2"}, BuildKit, ""},
		{"auto where daemon.json turns BuildKit off", "auto", Engine{OSType: "linux", APIVersion: "1.41", BuilderVersion: "1"}, Legacy, ""},
		{"auto before Docker 18.09", "auto", Engine{OSType: "linux", APIVersion: "1.38"}, Legacy, ""},
		{"auto at Docker 18.09", "auto", Engine{OSType: "linux", APIVersion: "1.39"}, BuildKit, ""},
		{"auto on a Windows engine", "auto", Engine{OSType: "windows", APIVersion: "1.41"}, Legacy, ""},
		{"legacy where BuildKit is there", "legacy", debian, Legacy, ""},
		{"buildkit where it is there", "buildkit", debian, BuildKit, ""},
		{"buildkit where it is off", "buildkit", Engine{OSType: "linux", APIVersion: "1.41", BuilderVersion: "1"}, "", `polls:appBuilder: "buildkit", but the Docker engine has no BuildKit (its daemon.json sets features.buildkit to false): set it to "auto" or "legacy"`},
		{"buildkit on Windows", "buildkit", Engine{OSType: "windows"}, "", "(it is a windows engine)"},
		{"unknown setting", "v1", debian, "", `polls:appBuilder: "v1" is not a builder`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Choose(tt.setting, tt.engine)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Choose(%q, %+v) error = %v; want one containing %q", tt.setting, tt.engine, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Choose(%q, %+v) = %q, %v; want %q", tt.setting, tt.engine, got, err, tt.want)
			}
		})
	}
}

// TestPlan ensures only the stack's stopped step containers and the
// legacy builder's unlabelled ARG step go, running ones, other stacks' and
// every container of the app image (which inherit its label) stay, and the newest build stage is kept as the cache only after a
// successful build.
func TestPlan(t *testing.T) {
	label := func(v string) map[string]string { return map[string]string{Label: v} }
	app := func(more string) map[string]string {
		return map[string]string{Label: "polls-dev", strings.SplitN(more, "=", 2)[0]: strings.SplitN(more, "=", 2)[1]}
	}
	containers := []Container{
		{ID: "run", State: "exited", Command: "/bin/sh -c 'go mod download'", Labels: label("polls-dev")},
		{ID: "copy", State: "created", Command: "/bin/sh -c '#(nop) COPY dir:1a2b in /src '", Labels: label("polls-dev")},
		{ID: "dead", State: "dead", Command: "/bin/sh -c 'go build'", Labels: label("polls-dev")},
		{ID: "cmd", State: "created", Command: `/usr/local/bin/polls /bin/sh -c '#(nop) ' 'CMD ["serve"]'`, Labels: label("polls-dev")},
		{ID: "step-now", State: "running", Command: "/bin/sh -c 'go build'", Labels: label("polls-dev")},
		{ID: "prod-step", State: "exited", Command: "/bin/sh -c 'go build'", Labels: label("polls-prod")},
		// Containers of the app image inherit its label: the stack's own, a
		// Swarm task, and one an operator ran by hand, all stopped.
		{ID: "migrate", State: "exited", Command: "/usr/local/bin/polls migrate", Labels: app("polls.stack=polls-dev")},
		{ID: "migrate-sh", State: "exited", Command: "/bin/sh -c 'polls migrate'", Labels: app("polls.stack=polls-dev")},
		{ID: "task", State: "exited", Command: "/usr/local/bin/polls serve", Labels: app("com.docker.swarm.task.id=x1")},
		{ID: "by-hand", State: "exited", Command: "/usr/local/bin/polls version", Labels: label("polls-dev")},
		{ID: "arg", State: "created", Command: `/bin/sh -c '#(nop) ' 'ARG POLLS_BUILD'`},
		// The same step on a base image with an entrypoint (the postgres
		// image's, under agent/Dockerfile's stages).
		{ID: "arg-pg", State: "created", Command: `docker-entrypoint.sh /bin/sh -c '#(nop) ' 'ARG POLLS_BUILD'`},
		// The steps arg that opens a build stage, on either base image.
		{ID: "arg-steps", State: "created", Command: `/bin/sh -c '#(nop) ' 'ARG POLLS_BUILD_STEPS'`},
		{ID: "arg-pg-steps", State: "created", Command: `docker-entrypoint.sh /bin/sh -c '#(nop) ' 'ARG POLLS_BUILD_STEPS'`},
		{ID: "arg-steps-more", State: "created", Command: `/bin/sh -c '#(nop) ' 'ARG POLLS_BUILD_STEPS_X'`},
		{ID: "arg-other", State: "created", Command: `/bin/sh -c '#(nop) ' 'ARG VERSION=dev'`},
		{ID: "arg-pg-other", State: "created", Command: `docker-entrypoint.sh /bin/sh -c '#(nop) ' 'ARG POSTGRES_IMAGE'`},
		{ID: "arg-in-cmd", State: "created", Command: `/usr/local/bin/polls x/bin/sh -c '#(nop) ' 'ARG POLLS_BUILD'`},
		{ID: "app", State: "created", Command: "/usr/local/bin/polls serve"},
	}
	stage := map[string]string{Label: "polls-dev", StageLabel: "build"}
	images := []Image{
		{ID: "stage-1", Created: 100, Labels: stage},
		{ID: "release-1", Created: 300, Labels: label("polls-dev")},
		{ID: "stage-2", Created: 200, Labels: stage},
	}
	tests := []struct {
		name      string
		keepCache bool
		want      Cleanup
	}{
		{"after a successful build", true, Cleanup{Containers: []string{"arg", "arg-pg", "arg-pg-steps", "arg-steps", "cmd", "copy", "dead", "run"}, Cache: "stage-2"}},
		{"after a failed build", false, Cleanup{Containers: []string{"arg", "arg-pg", "arg-pg-steps", "arg-steps", "cmd", "copy", "dead", "run"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan("polls-dev", containers, images, tt.keepCache)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Plan (-want +got):\n%s", diff)
			}
		})
	}
	if got := Plan("polls-dev", nil, []Image{{ID: "release", Labels: label("polls-dev")}}, true); got.Cache != "" {
		t.Errorf("Plan kept release image %q as the build cache; only a build stage is one", got.Cache)
	}
}
