package dockerapi

import (
	"context"

	"github.com/moby/moby/client"
)

// Secret is a Swarm secret, as far as the program needs it.
type Secret struct {
	ID     string
	Name   string
	Labels map[string]string
}

// Secrets lists the Swarm secrets that carry every label given.
func (c *Client) Secrets(ctx context.Context, labels map[string]string) ([]Secret, error) {
	res, err := c.api.SecretList(ctx, client.SecretListOptions{Filters: labelFilter(labels)})
	if err != nil {
		return nil, err
	}
	out := make([]Secret, 0, len(res.Items))
	for _, s := range res.Items {
		out = append(out, Secret{ID: s.ID, Name: s.Spec.Name, Labels: s.Spec.Labels})
	}
	return out, nil
}

// StopAndRemoveContainer stops a container as the provider deletes one:
// SIGTERM, then SIGKILL after grace seconds (an app drains its requests in
// flight meanwhile); then removes it and its anonymous volumes.
func (c *Client) StopAndRemoveContainer(ctx context.Context, id string, grace int) error {
	if err := c.StopContainer(ctx, id, grace); err != nil {
		return err
	}
	return c.RemoveContainer(ctx, id)
}

// StopContainer stops a container as the provider deletes one (SIGTERM,
// then SIGKILL after grace seconds) and leaves it for its owner to remove.
// A container that is gone or stopped already is no error.
func (c *Client) StopContainer(ctx context.Context, id string, grace int) error {
	if _, err := c.api.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &grace}); err != nil && !IsNotFound(err) {
		return err
	}
	return nil
}

// RemoveService removes a Swarm service and its tasks.
func (c *Client) RemoveService(ctx context.Context, id string) error {
	_, err := c.api.ServiceRemove(ctx, id, client.ServiceRemoveOptions{})
	return err
}

// RemoveSecret removes a Swarm secret; the engine refuses (IsConflict or
// an invalid-argument error) while a service uses it.
func (c *Client) RemoveSecret(ctx context.Context, id string) error {
	_, err := c.api.SecretRemove(ctx, id, client.SecretRemoveOptions{})
	return err
}

// RemoveNetwork removes a network; the engine refuses while a container is
// attached to it.
func (c *Client) RemoveNetwork(ctx context.Context, id string) error {
	_, err := c.api.NetworkRemove(ctx, id, client.NetworkRemoveOptions{})
	return err
}

// labelFilter filters a listing to the objects that carry every label
// given.
func labelFilter(labels map[string]string) client.Filters {
	f := make(client.Filters)
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	return f
}
