package dockerapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestBuildLeftovers ensures the engine's answers the program's build
// cleanup relies on: Ping names a Linux engine and its API version,
// BuildLeftovers lists the containers carrying the label in any state and
// the untagged images carrying it (not others' untagged images), TagImage
// takes an image out of that list and RemoveContainer and RemoveImage
// remove.
func TestBuildLeftovers(t *testing.T) {
	c := engine(t)
	ctx := context.Background()
	p, err := c.Ping(ctx)
	if err != nil || p.OSType != "linux" || p.APIVersion == "" {
		t.Fatalf("Ping = %+v, %v; want a linux engine and its API version", p, err)
	}

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	value := "test-" + hex.EncodeToString(b)
	created := docker(t, "create", "--label", "polls.build="+value, testImage, "true")
	exited := docker(t, "run", "-d", "--label", "polls.build="+value, testImage, "true")
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", created, exited).Run() })
	_ = docker(t, "wait", exited)
	// An untagged image carrying the label, as a legacy build stage is.
	build := exec.Command("docker", "build", "-q", "-")
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	build.Stdin = strings.NewReader("FROM " + testImage + "\nLABEL polls.build=" + value + "\n")
	out, err := build.Output()
	if err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	image := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("docker", "image", "rm", "-f", image).Run() })

	containers, images, err := c.BuildLeftovers(ctx, "polls.build", value)
	if err != nil {
		t.Fatalf("BuildLeftovers: %v", err)
	}
	states := map[string]string{}
	for _, ct := range containers {
		if ct.Labels["polls.build"] == value {
			states[ct.ID] = ct.State
		}
	}
	if states[created] != "created" || states[exited] != "exited" || len(states) != 2 {
		t.Errorf("labelled containers listed = %v; want %s created and %s exited", states, created, exited)
	}
	if len(images) != 1 || images[0].ID != image || images[0].Labels["polls.build"] != value {
		t.Errorf("untagged labelled images = %+v; want only %s", images, image)
	}

	if err := c.TagImage(ctx, image, "polls-dockerapi-test", value); err != nil {
		t.Fatalf("TagImage: %v", err)
	}
	if _, images, _ = c.BuildLeftovers(ctx, "polls.build", value); len(images) != 0 {
		t.Errorf("a tagged image is still listed as untagged: %+v", images)
	}
	for _, id := range []string{created, exited} {
		if err := c.RemoveContainer(ctx, id); err != nil {
			t.Errorf("RemoveContainer(%.12s): %v", id, err)
		}
	}
	if err := c.RemoveImage(ctx, "polls-dockerapi-test:"+value); err != nil {
		t.Errorf("RemoveImage: %v", err)
	}
	if exec.Command("docker", "image", "inspect", image).Run() == nil {
		t.Errorf("image %s remains after RemoveImage of its only tag", image)
	}
	containers, _, _ = c.BuildLeftovers(ctx, "polls.build", value)
	for _, ct := range containers {
		if ct.Labels["polls.build"] == value {
			t.Errorf("container %.12s remains after RemoveContainer", ct.ID)
		}
	}
}

// docker runs the docker CLI and returns its trimmed output.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
