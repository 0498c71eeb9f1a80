package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Local images the end-to-end stack runs on; scripts/images.sh builds them.
var localImages = []string{
	"polls-local/postgres:15", "polls-local/nginx:1", "polls-local/golang:1.26", "polls-local/static:bookworm",
	"polls-local/prometheus:2.42", "polls-local/alertmanager:0.25",
}

// requireToolchain skips the test, naming exactly what is missing, unless a
// Docker engine, the Pulumi CLI, its Go language host, the docker and random
// plugins at the pinned versions and the local images are all present.
func requireToolchain(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("docker"); err != nil {
		missing = append(missing, "the docker CLI (apt-get install docker.io)")
	} else if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		missing = append(missing, fmt.Sprintf("a running Docker engine (`docker info`: %s; start dockerd)", strings.TrimSpace(string(out))))
	} else {
		for _, img := range localImages {
			if exec.Command("docker", "image", "inspect", img).Run() != nil {
				missing = append(missing, "image "+img+" (run scripts/images.sh)")
			}
		}
	}
	if _, err := exec.LookPath("pulumi"); err != nil {
		missing = append(missing, "the pulumi CLI on PATH (built from github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)")
	} else {
		plugins := installedPlugins(t)
		for _, want := range []string{"resource docker 4.10.0", "resource random 4.19.0"} {
			if !plugins[want] {
				missing = append(missing, "the Pulumi plugin "+want+" (not in `pulumi plugin ls`)")
			}
		}
	}
	if _, err := exec.LookPath("pulumi-language-go"); err != nil {
		missing = append(missing, "the Go language host pulumi-language-go on PATH")
	}
	if len(missing) > 0 {
		t.Skipf("end-to-end test skipped: missing %s", strings.Join(missing, "; "))
	}
}

// installedPlugins returns "kind name version" for each plugin the CLI has.
func installedPlugins(t *testing.T) map[string]bool {
	t.Helper()
	cmd := exec.Command("pulumi", "plugin", "ls", "--json")
	cmd.Env = append(os.Environ(), "PULUMI_SKIP_UPDATE_CHECK=1")
	out, err := cmd.Output()
	got := map[string]bool{}
	if err != nil {
		return got
	}
	var list []struct{ Name, Kind, Version string }
	if json.Unmarshal(out, &list) != nil {
		return got
	}
	for _, p := range list {
		got[p.Kind+" "+p.Name+" "+strings.TrimPrefix(p.Version, "v")] = true
	}
	return got
}
