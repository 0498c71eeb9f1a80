package e2e

import (
	"encoding/json"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// deadProxy is a GOPROXY nothing listens on: a build with it fails at
// `go mod download`.
const deadProxy = "http://127.0.0.1:9"

// hostState is what the engine held before a step: every container and
// every untagged image, by ID.
type hostState struct{ containers, images map[string]bool }

// hostNow records the engine's containers and untagged images.
func (e *env) hostNow() hostState {
	e.t.Helper()
	return hostState{
		containers: lines(e.docker("ps", "-aq", "--no-trunc")),
		images:     lines(e.docker("images", "-q", "--no-trunc", "--filter", "dangling=true")),
	}
}

func lines(s string) map[string]bool {
	m := map[string]bool{}
	for l := range strings.FieldsSeq(s) {
		m[l] = true
	}
	return m
}

// appImageID returns the ID of the image the stack's app runs, ref its name.
func (e *env) appImageID(ref string) string {
	e.t.Helper()
	return e.docker("image", "inspect", "-f", "{{.Id}}", ref)
}

// buildLeftovers returns what this stack's app builds made since before
// and left: containers the stack does not own (neither its label nor one
// of its Swarm services) that a build step of this stack ran (the
// stack's build label, or this test's module proxy in their environment),
// or, when the stack builds with the legacy builder, that builder's
// unlabelled `ARG POLLS_BUILD` or `ARG POLLS_BUILD_STEPS` step (the first
// of a stage), created and never started, whatever
// the base image's entrypoint; and untagged images
// of this stack's builds other than allowed (the
// release just replaced, which its old containers used until the end of
// the update). Other users of the engine may make containers meanwhile:
// only this stack's are counted.
func (e *env) buildLeftovers(before hostState, allowed ...string) []string {
	e.t.Helper()
	var left []string
	legacy := e.config["polls:appBuilder"] == "legacy"
	now := e.hostNow()
	for id := range now.containers {
		if before.containers[id] {
			continue
		}
		var c struct {
			Name   string
			State  struct{ Status string }
			Config struct {
				Labels map[string]string
				Env    []string
				Cmd    []string
			}
		}
		if !e.inspect(id, &c) {
			continue // gone meanwhile
		}
		l := c.Config.Labels
		if l["polls.stack"] == e.prefix || strings.HasPrefix(l["com.docker.swarm.service.name"], e.prefix+"-") {
			continue
		}
		env := strings.Join(c.Config.Env, " ")
		// Only a legacy build makes such a step, and it carries no label:
		// counted only for a stack that builds so, since another test's
		// legacy build on the same engine (TestEndToEnd's, beside
		// TestSwarm) may leave one meanwhile.
		cmd := strings.Join(c.Config.Cmd, " ")
		argStep := legacy && c.State.Status == "created" && (strings.HasSuffix(cmd, "#(nop)  ARG POLLS_BUILD") || strings.HasSuffix(cmd, "#(nop)  ARG POLLS_BUILD_STEPS"))
		if l["polls.build"] == e.prefix || argStep || strings.Contains(env, "GOPROXY="+e.proxy) || strings.Contains(env, "GOPROXY="+deadProxy) {
			left = append(left, "container "+c.Name+" ("+c.State.Status+"): "+strings.Join(c.Config.Cmd, " "))
		}
	}
	ok := map[string]bool{}
	for _, id := range allowed {
		ok[id] = true
	}
	for id := range now.images {
		if before.images[id] || ok[id] {
			continue
		}
		var img struct {
			Config struct{ Labels map[string]string }
		}
		if !e.inspect(id, &img) {
			continue
		}
		if img.Config.Labels["polls.build"] == e.prefix {
			left = append(left, "untagged image "+id)
		}
	}
	sort.Strings(left)
	return left
}

// noBuildLeftovers fails the test if this stack's builds left anything
// since before, waiting up to 20 s: after a failed legacy build the
// program's watcher removes the leftovers once the program has ended.
func (e *env) noBuildLeftovers(step string, before hostState, allowed ...string) {
	e.t.Helper()
	var left []string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if left = e.buildLeftovers(before, allowed...); len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		e.t.Errorf("%s left on the engine what the stack does not own:\n%s", step, strings.Join(left, "\n"))
	}
}

// inspect decodes `docker inspect` of id into v; false if it is gone.
func (e *env) inspect(id string, v any) bool {
	out, err := exec.Command("docker", "inspect", id).Output()
	if err != nil {
		return false
	}
	var list []json.RawMessage
	if json.Unmarshal(out, &list) != nil || len(list) != 1 {
		return false
	}
	return json.Unmarshal(list[0], v) == nil
}

// buildArg sets one app build arg for the next `pulumi up` and returns
// the value it had.
func (e *env) buildArg(k, v string) (was string) {
	e.t.Helper()
	var args map[string]string
	if err := json.Unmarshal([]byte(e.config["polls:appBuildArgs"]), &args); err != nil {
		e.t.Fatal(err)
	}
	was, args[k] = args[k], v
	b, _ := json.Marshal(args)
	e.config["polls:appBuildArgs"] = string(b)
	return was
}

// failedBuild runs `pulumi up` with a build that fails at `go mod
// download` (a new version from a module proxy nothing serves) and checks
// that it fails naming the step, leaves nothing behind and that every
// tenant keeps serving version; the build args are then as before.
func (e *env) failedBuild(tenants string, version string, serving []string) {
	e.t.Helper()
	before := e.hostNow()
	// From the plain Go image: the warm one (warmgo_test.go) holds every
	// module already, so nothing would need the proxy.
	goImage := e.buildArg("GO_IMAGE", goBaseImage)
	e.buildArg("GOPROXY", deadProxy)
	e.buildArg("VERSION", version+"-broken")
	e.setTenants(tenants)
	err := e.upErr()
	e.buildArg("GO_IMAGE", goImage)
	e.buildArg("GOPROXY", e.proxy)
	e.buildArg("VERSION", version)
	if err == nil {
		e.t.Errorf("pulumi up with a build that cannot download modules succeeded; want it to fail")
	} else if !strings.Contains(err.Error(), "go mod download") {
		e.t.Errorf("pulumi up error does not name the failed build step:\n%s", errorLines(err.Error()))
	}
	e.noBuildLeftovers("a failed build", before)
	for _, tenant := range serving {
		if v := e.version(tenant); v != version {
			e.t.Errorf("%s serves version %q after a failed build; want %q", tenant, v, version)
		}
	}
	e.setTenants(tenants)
}
