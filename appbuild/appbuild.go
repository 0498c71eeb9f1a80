// Package appbuild decides how the app image is built, from what the Docker
// engine says about itself, and what of a legacy build is removed after it.
//
// The docker provider's Image resource sends every build with rm=0 (pulumi-
// docker v4.10.0 leaves ImageBuildOptions.Remove unset, and the Docker
// client turns that into rm=0), so the legacy builder keeps the container of
// every step it runs, successful or failed, and the untagged images of build
// stages and failed builds. BuildKit makes neither: its steps are not Docker
// containers and its cache is not images. So BuildKit is used wherever the
// engine has it, and after a legacy build the program removes what the build
// left, found by the label every step of it carries (Label, set in
// app/Dockerfile from the StepsArg build arg). It imports no Pulumi.
package appbuild

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Builder is a Docker image builder.
type Builder string

// The builders.
const (
	BuildKit Builder = "buildkit"
	Legacy   Builder = "legacy"
)

// The settings of polls:appBuilder (as spec.BuilderAuto and its siblings).
const (
	settingAuto     = "auto"
	settingBuildKit = "buildkit"
	settingLegacy   = "legacy"
)

// Engine is what the engine answers to GET /_ping.
type Engine struct {
	// OSType is "linux" or "windows".
	OSType string
	// APIVersion is the engine's API version, e.g. "1.41".
	APIVersion string
	// BuilderVersion is the Builder-Version header: "1" where daemon.json
	// turns BuildKit off (the engine then refuses BuildKit builds), "2"
	// where BuildKit is the default, "" where engines before 23.0 have no
	// setting (BuildKit is there, only not the CLI's default).
	BuilderVersion string
}

// minBuildKitAPI is the API version of Docker 18.09, the first engine with
// BuildKit.
const minBuildKitAPI = "1.39"

// HasBuildKit reports whether the engine builds with BuildKit, and if not,
// why not.
func (e Engine) HasBuildKit() (bool, string) {
	switch {
	case e.OSType != "" && e.OSType != "linux":
		return false, fmt.Sprintf("it is a %s engine", e.OSType)
	case e.APIVersion != "" && olderAPI(e.APIVersion, minBuildKitAPI):
		return false, fmt.Sprintf("its API version %s is older than Docker 18.09's %s", e.APIVersion, minBuildKitAPI)
	case e.BuilderVersion == "1":
		return false, `its daemon.json sets features.buildkit to false`
	}
	return true, ""
}

// Choose returns the builder that setting (a value of polls:appBuilder)
// means on the engine, or an error naming the key and the fix when
// BuildKit is asked of an engine without it.
func Choose(setting string, e Engine) (Builder, error) {
	has, why := e.HasBuildKit()
	switch setting {
	case settingLegacy:
		return Legacy, nil
	case settingBuildKit:
		if !has {
			return "", fmt.Errorf("polls:appBuilder: \"buildkit\", but the Docker engine has no BuildKit (%s): set it to \"auto\" or \"legacy\" (`pulumi config set polls:appBuilder auto`), or turn BuildKit on in the engine's daemon.json", why)
		}
		return BuildKit, nil
	case settingAuto, "":
		if has {
			return BuildKit, nil
		}
		return Legacy, nil
	}
	return "", fmt.Errorf("polls:appBuilder: %q is not a builder: use \"auto\", \"buildkit\" or \"legacy\"", setting)
}

// olderAPI reports whether API version a is older than b ("1.38" < "1.39").
func olderAPI(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// Label is the label a stack's built images carry, and every step
// container and image of its legacy builds, with the stack's prefix as
// value; StageLabel marks the build stage's, whose newest image is the
// legacy builder's cache of compiled dependencies. app/Dockerfile and
// agent/Dockerfile set Label from two build args (BuildArgs): BuildArg on
// the image, StepsArg on every step.
const (
	Label      = "polls.build"
	StageLabel = "polls.build.stage"
	BuildArg   = "POLLS_BUILD"
	StepsArg   = "POLLS_BUILD_STEPS"
)

// BuildArgs are the build args that label a stack's build with its prefix:
// the image with either builder, and every step with the legacy builder
// only, the one that keeps step containers. A build arg is in the
// environment, and so the cache key, of every RUN step after it: set for
// BuildKit too, it would keep the stacks on one engine from sharing a step
// (the agent image's package install, the dependencies' compilation), and
// every stack's first build would run them all again.
func BuildArgs(b Builder, prefix string) map[string]string {
	args := map[string]string{BuildArg: prefix}
	if b == Legacy {
		args[StepsArg] = prefix
	}
	return args
}

// CacheTag is the tag the newest build-stage image of a legacy build gets,
// on the app image's repository, so that the next build reuses its
// compiled dependencies and the image is the stack's, not a dangling one.
const CacheTag = "build-cache"

// Container is a container carrying Label, or one created and never
// started.
type Container struct {
	ID string
	// State is created, running, exited, dead, …
	State string
	// Command is the command as the engine lists it.
	Command string
	Labels  map[string]string
}

// IsStep reports whether c is a step of one of the stack's legacy builds.
// The label alone does not say so: every container of the app image
// inherits it, the stack's own (labelled polls.stack; a migration that ran
// is one, exited) and Swarm's tasks of its services among them. A build
// step runs its Dockerfile line through the shell, as every RUN line of
// app/Dockerfile is written, or is a no-op "#(nop)" line of the same form,
// listed after the entrypoint once the stage has one; the app image's
// containers run its entrypoint.
func IsStep(prefix string, c Container) bool {
	return c.Labels[Label] == prefix && c.Labels["polls.stack"] == "" &&
		c.Labels["com.docker.swarm.task.id"] == "" &&
		(strings.HasPrefix(c.Command, "/bin/sh -c ") || strings.Contains(c.Command, " /bin/sh -c '#(nop) '"))
}

// argSteps are how the engine lists the containers of the legacy builder's
// `ARG POLLS_BUILD_STEPS` and `ARG POLLS_BUILD` steps that open a stage:
// they come before the label, so they have none. Such a step is cached
// once a build on the engine ran it on a base image, so there is one such
// container per base image and engine, from the first build; a concurrent
// first build could lose its own only in the moment between the
// container's creation and its commit.
var argSteps = []string{
	`/bin/sh -c '#(nop) ' 'ARG ` + StepsArg + `'`,
	`/bin/sh -c '#(nop) ' 'ARG ` + BuildArg + `'`,
}

// isArgStep reports whether command is an argSteps', after the base
// image's entrypoint when it has one: the engine lists a step's command
// behind it, as for agent/Dockerfile's stages on the postgres image
// ("docker-entrypoint.sh /bin/sh -c …"), whose step containers also hold
// an anonymous volume for the image's VOLUME.
func isArgStep(command string) bool {
	for _, step := range argSteps {
		if command == step || strings.HasSuffix(command, " "+step) {
			return true
		}
	}
	return false
}

// Image is an untagged image carrying Label.
type Image struct {
	ID      string
	Created int64 // Unix seconds
	Labels  map[string]string
}

// Cleanup is what to do after a build: remove Containers, tag Cache, then
// remove every untagged image carrying Label. Removing an image that a
// container still uses (the previous release, until the update replaces
// its containers) or that has children fails, and it is left for the next
// cleanup.
type Cleanup struct {
	// Containers are the stopped step containers of legacy builds.
	Containers []string
	// Cache is the newest build-stage image, to tag CacheTag ("" for none).
	Cache string
}

// Plan decides what to do with the leftovers of the stack's builds (prefix
// is the value of their Label): every stopped step container goes and, with keepCache (after a
// successful build), the newest build-stage image becomes the cache. After
// a failed build no image is kept, so a half-built stage never replaces
// the cache of the last good one.
func Plan(prefix string, containers []Container, dangling []Image, keepCache bool) Cleanup {
	var c Cleanup
	for _, ct := range containers {
		stopped := ct.State == "created" || ct.State == "exited" || ct.State == "dead"
		if stopped && (IsStep(prefix, ct) || (ct.State == "created" && isArgStep(ct.Command))) {
			c.Containers = append(c.Containers, ct.ID)
		}
	}
	images := append([]Image(nil), dangling...)
	sort.SliceStable(images, func(i, j int) bool {
		if images[i].Created != images[j].Created {
			return images[i].Created > images[j].Created
		}
		return images[i].ID < images[j].ID
	})
	for _, img := range images {
		if keepCache && img.Labels[StageLabel] == "build" {
			c.Cache = img.ID
			break
		}
	}
	sort.Strings(c.Containers)
	return c
}
