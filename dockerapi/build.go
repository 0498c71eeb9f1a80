package dockerapi

import (
	"context"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Ping is what the engine says about itself in answer to GET /_ping.
type Ping struct {
	APIVersion string
	OSType     string
	// BuilderVersion is "1" or "2" where the engine names its default
	// builder, "" where it does not (engines before 23.0, unless their
	// daemon.json sets features.buildkit).
	BuilderVersion string
}

// Ping asks the engine its API version, OS and default builder.
func (c *Client) Ping(ctx context.Context) (Ping, error) {
	res, err := c.api.Ping(ctx, client.PingOptions{})
	if err != nil {
		return Ping{}, err
	}
	return Ping{APIVersion: res.APIVersion, OSType: res.OSType, BuilderVersion: string(res.BuilderVersion)}, nil
}

// BuildContainer is a container listed by BuildLeftovers.
type BuildContainer struct {
	ID      string
	State   string
	Command string
	Labels  map[string]string
}

// BuildImage is an untagged image listed by BuildLeftovers.
type BuildImage struct {
	ID      string
	Created int64
	Labels  map[string]string
}

// BuildLeftovers lists the containers that carry label key=value (any
// state) and the ones created but never started (the legacy builder's
// steps that run nothing), and the untagged top-level images that carry
// the label.
func (c *Client) BuildLeftovers(ctx context.Context, key, value string) ([]BuildContainer, []BuildImage, error) {
	label := key + "=" + value
	var containers []BuildContainer
	seen := map[string]bool{}
	byLabel, byState := make(client.Filters), make(client.Filters)
	byLabel.Add("label", label)
	byState.Add("status", "created")
	for _, f := range []client.Filters{byLabel, byState} {
		res, err := c.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
		if err != nil {
			return nil, nil, err
		}
		for _, ct := range res.Items {
			if !seen[ct.ID] {
				seen[ct.ID] = true
				containers = append(containers, BuildContainer{ID: ct.ID, State: string(ct.State), Command: ct.Command, Labels: ct.Labels})
			}
		}
	}
	f := make(client.Filters)
	f.Add("label", label)
	f.Add("dangling", "true")
	res, err := c.api.ImageList(ctx, client.ImageListOptions{Filters: f})
	if err != nil {
		return nil, nil, err
	}
	images := make([]BuildImage, 0, len(res.Items))
	for _, img := range res.Items {
		images = append(images, BuildImage{ID: img.ID, Created: img.Created, Labels: img.Labels})
	}
	return containers, images, nil
}

// RemoveContainer removes a stopped container and its anonymous volumes.
func (c *Client) RemoveContainer(ctx context.Context, id string) error {
	_, err := c.api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{RemoveVolumes: true})
	return err
}

// RemoveImage removes an image and its untagged parents that no other
// image needs; the engine refuses (IsConflict) while a container uses it.
func (c *Client) RemoveImage(ctx context.Context, id string) error {
	_, err := c.api.ImageRemove(ctx, id, client.ImageRemoveOptions{PruneChildren: true})
	return err
}

// TagImage tags image id as repo:tag.
func (c *Client) TagImage(ctx context.Context, id, repo, tag string) error {
	_, err := c.api.ImageTag(ctx, client.ImageTagOptions{Source: id, Target: repo + ":" + tag})
	return err
}

// IsConflict reports whether the engine refused because something uses
// the object (HTTP 409).
func IsConflict(err error) bool { return cerrdefs.IsConflict(err) }

// IsNotFound reports whether the object is gone (HTTP 404).
func IsNotFound(err error) bool { return cerrdefs.IsNotFound(err) }
