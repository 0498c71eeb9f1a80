package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The Go image the tests' stacks build app/ and agent/ with: the base
// image (polls-local/golang:1.26) with the dependencies of both already
// downloaded and compiled into its Go build cache, as a CI cache would hold
// them. Each stack labels its builds with its own prefix ahead of the
// dependency layers (app/Dockerfile), so without it every stack of every
// test compiled them again, once per builder: in one CI run, 3m39s of
// TestEndToEnd's first `pulumi up` and 6m39s of its switch to the legacy
// builder, out of 21.5 minutes. The Dockerfiles, the builds and what they
// leave are the same; only the compiler finds its work done.
//
// The image is named by a hash of what goes into it (both modules' go.mod,
// go.sum and dependency lists, the base image's ID), so it is built once
// per change of dependencies and kept between runs.
const goBaseImage = "polls-local/golang:1.26"

var warm struct {
	sync.Mutex
	image string
}

// warmDockerfile compiles, with the flags the Dockerfiles build with, each
// module's dependency packages (deps.txt, listed on the host).
const warmDockerfile = `ARG GO_IMAGE
FROM ${GO_IMAGE}
ARG GOPROXY
ENV GOSUMDB=off GOFLAGS=-mod=readonly GOTOOLCHAIN=local CGO_ENABLED=0
COPY . /warm/
RUN set -eux; for m in app agent; do \
      cd /warm/$m; go mod download; go build -trimpath $(cat deps.txt); \
    done; rm -rf /warm
`

// warmGoImage returns the warm image's name, building it first if the
// engine lacks it. proxy is the module proxy the build downloads from.
func warmGoImage(t *testing.T, root, proxy string) string {
	t.Helper()
	warm.Lock()
	defer warm.Unlock()
	if warm.image != "" {
		return warm.image
	}
	ctx := t.TempDir()
	h := sha256.New()
	base, err := exec.Command("docker", "image", "inspect", "-f", "{{.Id}}", goBaseImage).Output()
	if err != nil {
		t.Fatalf("docker image inspect %s: %v (run scripts/images.sh)", goBaseImage, err)
	}
	h.Write(base)
	h.Write([]byte(warmDockerfile))
	// The targets each Dockerfile builds, in a fixed order: the hash names
	// the image.
	for _, mod := range []struct {
		dir     string
		targets []string
	}{{"app", []string{"./internal/deps"}}, {"agent", []string{".", "./cmd/pgstart", "./cmd/polls-backup"}}} {
		m, targets := mod.dir, mod.targets
		list := exec.Command("go", append([]string{"list", "-deps", "-f", "{{if and (not .Standard) .Module}}{{if not .Module.Main}}{{.ImportPath}}{{end}}{{end}}"}, targets...)...)
		list.Dir = filepath.Join(root, m)
		list.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-mod=readonly")
		out, err := list.Output()
		if err != nil {
			t.Fatalf("go list -deps in %s/: %v", m, err)
		}
		deps := strings.Join(strings.Fields(string(out)), "\n") + "\n"
		if err := os.MkdirAll(filepath.Join(ctx, m), 0o755); err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{"deps.txt": []byte(deps)}
		for _, f := range []string{"go.mod", "go.sum"} {
			if files[f], err = os.ReadFile(filepath.Join(root, m, f)); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []string{"deps.txt", "go.mod", "go.sum"} {
			h.Write([]byte(m + "/" + f + "\x00"))
			h.Write(files[f])
			if err := os.WriteFile(filepath.Join(ctx, m, f), files[f], 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	image := "polls-e2e/golang-warm:" + hex.EncodeToString(h.Sum(nil))[:12]
	if exec.Command("docker", "image", "inspect", image).Run() == nil {
		warm.image = image
		return image
	}
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(warmDockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("docker", "build", "--network", "host", "-t", image,
		"--build-arg", "GO_IMAGE="+goBaseImage, "--build-arg", "GOPROXY="+proxy, ctx)
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", image, err, tail(string(out), 3000))
	}
	t.Logf("built %s, the Go image with app/'s and agent/'s dependencies compiled", image)
	// The ones built for earlier dependencies go.
	if old, err := exec.Command("docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "polls-e2e/golang-warm").Output(); err == nil {
		for ref := range strings.FieldsSeq(string(old)) {
			if ref != image {
				_ = exec.Command("docker", "image", "rm", ref).Run()
			}
		}
	}
	warm.image = image
	return image
}
