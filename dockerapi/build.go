package dockerapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/_ping", nil), nil)
	if err != nil {
		return Ping{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Ping{}, errors.New("docker engine at " + c.host + ": " + err.Error())
	}
	resp.Body.Close()
	return Ping{
		APIVersion:     resp.Header.Get("Api-Version"),
		OSType:         resp.Header.Get("Ostype"),
		BuilderVersion: resp.Header.Get("Builder-Version"),
	}, nil
}

// BuildContainer is a container listed by BuildLeftovers.
type BuildContainer struct {
	ID      string `json:"Id"`
	State   string
	Command string
	Labels  map[string]string
}

// BuildImage is an untagged image listed by BuildLeftovers.
type BuildImage struct {
	ID      string `json:"Id"`
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
	for _, filter := range []map[string][]string{{"label": {label}}, {"status": {"created"}}} {
		f, _ := json.Marshal(filter)
		var list []BuildContainer
		if err := c.do(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(f)}}, nil, &list); err != nil {
			return nil, nil, err
		}
		for _, ct := range list {
			if !seen[ct.ID] {
				seen[ct.ID] = true
				containers = append(containers, ct)
			}
		}
	}
	f, _ := json.Marshal(map[string][]string{"label": {label}, "dangling": {"true"}})
	var images []BuildImage
	if err := c.do(ctx, http.MethodGet, "/images/json", url.Values{"filters": {string(f)}}, nil, &images); err != nil {
		return nil, nil, err
	}
	return containers, images, nil
}

// RemoveContainer removes a stopped container and its anonymous volumes.
func (c *Client) RemoveContainer(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/containers/"+id, url.Values{"v": {"1"}}, nil, nil)
}

// RemoveImage removes an image and its untagged parents that no other
// image needs; the engine refuses (HTTP 409) while a container uses it.
func (c *Client) RemoveImage(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/images/"+id, nil, nil, nil)
}

// TagImage tags image id as repo:tag.
func (c *Client) TagImage(ctx context.Context, id, repo, tag string) error {
	return c.do(ctx, http.MethodPost, "/images/"+id+"/tag", url.Values{"repo": {repo}, "tag": {tag}}, nil, nil)
}
