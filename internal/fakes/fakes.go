// Package fakes is the one set of fakes every mock test of the program
// shares (the root package's tests and the generators' equivalence tests):
// a Docker engine that answers the program's own questions, and Pulumi mocks
// that record what each resource is declared with and answer with the
// outputs the docker and random providers compute. A change in a provider's
// outputs is made here once.
//
// Mocks check wiring only; the end-to-end tests run the real engine.
package fakes

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/dockerapi"
)

// Engine is a Docker engine as the program sees it through package
// dockerapi. The zero value is an engine with no networks that is not a
// Swarm manager, on which every container and service comes up.
type Engine struct {
	mu sync.Mutex
	// NetworkList is the engine's networks.
	NetworkList []dockerapi.Network
	// NodeList is the Swarm cluster's nodes; nil makes the engine answer as
	// one that is not a manager.
	NodeList []dockerapi.Node
	// ServiceList is the cluster's services.
	ServiceList []dockerapi.Service
	// SickApp names a tenant whose app never becomes healthy.
	SickApp string
	// ContainerList is the engine's containers (the backup agents and
	// databases the program looks at).
	ContainerList []dockerapi.ContainerSummary
	// Files are containers' files, by ID and path ("id:/path"); ReadFile
	// answers from them, and counts its calls in FileReads.
	Files     map[string]string
	FileReads int
	// ExecOut answers `docker exec` in a container, by ID: exit code 0 and
	// this output; a container missing here answers exit code 1.
	ExecOut map[string]string
	// Execs records every command run with Exec.
	Execs []string
	// PingAnswer is what /_ping says; zero: a Linux engine, API 1.41,
	// with BuildKit.
	PingAnswer dockerapi.Ping
	// Leftovers are what BuildLeftovers lists, by label value.
	Leftovers map[string]BuildSet
	// BuildLeaves is what each image build leaves under its label value
	// (the POLLS_BUILD build arg), when set.
	BuildLeaves *BuildSet
	// Builds records the build cleanup's calls: "list key=value",
	// "rm <id>", "rmi <id>", "tag <id> <repo>:<tag>".
	Builds []string
	// Waited records the spec WaitService was last asked for, by service ID.
	Waited map[string]dockerapi.Declared
	// Within records the bound Wait and WaitService were last given, by
	// container or service ID.
	Within map[string]time.Duration
	// Joined records Connect's calls: "<network> <id> <alias>".
	Joined []string
	// Stopped records the IDs StopContainer was given.
	Stopped []string
}

func (e *Engine) recordWithin(id string, within time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Within == nil {
		e.Within = map[string]time.Duration{}
	}
	e.Within[id] = within
}

// BuildSet is what an image build leaves: step containers and untagged
// images.
type BuildSet struct {
	Containers []dockerapi.BuildContainer
	Images     []dockerapi.BuildImage
}

// Networks lists NetworkList.
func (e *Engine) Networks(context.Context) ([]dockerapi.Network, error) { return e.NetworkList, nil }

// Wait records within and reports every container healthy but SickApp's
// app.
func (e *Engine) Wait(_ context.Context, id string, within time.Duration) error {
	e.recordWithin(id, within)
	if e.SickApp != "" && id == ID(e.SickApp+"-app") {
		return errors.New("container " + e.SickApp + "-app-1a2b3c4 is unhealthy; its last health check said:\nhealthcheck: database: connection refused")
	}
	return nil
}

// Nodes answers as a Swarm manager when NodeList is set.
func (e *Engine) Nodes(context.Context) ([]dockerapi.Node, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.NodeList == nil {
		return nil, fmt.Errorf("%w (This node is not a swarm manager.)", dockerapi.ErrNotManager)
	}
	out := make([]dockerapi.Node, len(e.NodeList))
	for i, n := range e.NodeList {
		n.Labels = maps.Clone(n.Labels)
		out[i] = n
	}
	return out, nil
}

// Services returns the services of ServiceList carrying every label given.
func (e *Engine) Services(_ context.Context, labels map[string]string) ([]dockerapi.Service, error) {
	var out []dockerapi.Service
	for _, s := range e.ServiceList {
		match := true
		for k, v := range labels {
			match = match && s.Labels[k] == v
		}
		if match {
			out = append(out, s)
		}
	}
	return out, nil
}

// Digest gives every image reference the digest Digest(ref) names, and
// refuses one whose name says "missing".
func (e *Engine) Digest(_ context.Context, ref string, _ *dockerapi.RegistryAuth) (string, error) {
	if strings.Contains(ref, "missing") {
		return "", errors.New("manifest unknown")
	}
	return Digest(ref), nil
}

// WaitService records what it was asked to wait for and within, and reports every
// service running but SickApp's app.
func (e *Engine) WaitService(_ context.Context, id string, want dockerapi.Declared, within time.Duration) error {
	e.recordWithin(id, within)
	e.mu.Lock()
	if e.Waited == nil {
		e.Waited = map[string]dockerapi.Declared{}
	}
	e.Waited[id] = want
	e.mu.Unlock()
	if e.SickApp != "" && id == ID(e.SickApp+"-app") {
		return errors.New("service polls-dev-" + e.SickApp + "-app update rollback completed: update paused due to failure or early termination of task")
	}
	return nil
}

// LabelNode records a node label.
func (e *Engine) LabelNode(_ context.Context, hostname, key, value string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.NodeList {
		if e.NodeList[i].Hostname == hostname {
			if e.NodeList[i].Labels == nil {
				e.NodeList[i].Labels = map[string]string{}
			}
			e.NodeList[i].Labels[key] = value
			return nil
		}
	}
	return fmt.Errorf("no node %s", hostname)
}

// Containers returns the containers of ContainerList carrying every label
// given.
func (e *Engine) Containers(_ context.Context, labels map[string]string) ([]dockerapi.ContainerSummary, error) {
	var out []dockerapi.ContainerSummary
	for _, c := range e.ContainerList {
		match := true
		for k, v := range labels {
			match = match && c.Labels[k] == v
		}
		if match {
			out = append(out, c)
		}
	}
	return out, nil
}

// Connect records the call and answers that the container holds the alias
// already, so no test waits for the router's DNS cache.
func (e *Engine) Connect(_ context.Context, network, id, alias string) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Joined = append(e.Joined, network+" "+id+" "+alias)
	return false, nil
}

// StopContainer records the call.
func (e *Engine) StopContainer(_ context.Context, id string, _ int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Stopped = append(e.Stopped, id)
	return nil
}

// ReadFile answers from Files.
func (e *Engine) ReadFile(_ context.Context, id, path string) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.FileReads++
	f, ok := e.Files[id+":"+path]
	if !ok {
		return nil, fmt.Errorf("no file %s in container %s", path, id)
	}
	return []byte(f), nil
}

// Exec answers from ExecOut and records the command.
func (e *Engine) Exec(_ context.Context, id string, cmd []string) (int, string, error) {
	e.mu.Lock()
	e.Execs = append(e.Execs, id+": "+strings.Join(cmd, " "))
	e.mu.Unlock()
	out, ok := e.ExecOut[id]
	if !ok {
		return 1, "no such command", nil
	}
	return 0, out, nil
}

// UnlabelNode removes a node label.
func (e *Engine) UnlabelNode(_ context.Context, hostname, key string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.NodeList {
		if e.NodeList[i].Hostname == hostname {
			delete(e.NodeList[i].Labels, key)
			return nil
		}
	}
	return fmt.Errorf("no node %s", hostname)
}

// Ping answers as PingAnswer, a Linux engine with API 1.41 by default.
func (e *Engine) Ping(context.Context) (dockerapi.Ping, error) {
	p := e.PingAnswer
	if p.OSType == "" {
		p.OSType, p.APIVersion = "linux", "1.41"
	}
	return p, nil
}

// BuildLeftovers lists the leftovers of the label value.
func (e *Engine) BuildLeftovers(_ context.Context, key, value string) ([]dockerapi.BuildContainer, []dockerapi.BuildImage, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Builds = append(e.Builds, "list "+key+"="+value)
	l := e.Leftovers[value]
	return l.Containers, l.Images, nil
}

// RemoveContainer removes a listed container.
func (e *Engine) RemoveContainer(_ context.Context, id string) error {
	e.buildCall("rm "+id, id)
	return nil
}

// RemoveImage removes a listed image.
func (e *Engine) RemoveImage(_ context.Context, id string) error {
	e.buildCall("rmi "+id, id)
	return nil
}

// TagImage tags an image, which is then no longer untagged.
func (e *Engine) TagImage(_ context.Context, id, repo, tag string) error {
	e.buildCall("tag "+id+" "+repo+":"+tag, id)
	return nil
}

// buildCall records call and drops id from the leftovers.
func (e *Engine) buildCall(call, id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Builds = append(e.Builds, call)
	for k, l := range e.Leftovers {
		var set BuildSet
		for _, c := range l.Containers {
			if c.ID != id {
				set.Containers = append(set.Containers, c)
			}
		}
		for _, img := range l.Images {
			if img.ID != id {
				set.Images = append(set.Images, img)
			}
		}
		e.Leftovers[k] = set
	}
}

// built records what the builds of label value leave: BuildLeaves, once
// for every image of the update.
func (e *Engine) built(value string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.BuildLeaves == nil {
		return
	}
	if e.Leftovers == nil {
		e.Leftovers = map[string]BuildSet{}
	}
	e.Leftovers[value] = *e.BuildLeaves
}

// Digest is the digest the fake engine's registry has for ref.
func Digest(ref string) string {
	return "sha256:" + strings.NewReplacer("/", "", ":", "", ".", "").Replace(ref)
}

// ID is the ID the fake providers give the resource of logical name name.
func ID(name string) string { return name + "-id" }

// Password is what the fake random provider generates for the password of
// logical name name: a value tests can search for in every input.
func Password(name string) string { return "Pw0" + strings.ReplaceAll(name, "-", "") + "X" }

// TenantPasswords are the passwords the program derives for a tenant
// deployed with no rotation from the fake tenant key: its database's, then
// its admin's.
func TenantPasswords(tenant string) []string {
	key := Password("tenant-key")
	return []string{contract.TenantPassword(key, "db", tenant, 0, 32), contract.TenantPassword(key, "admin", tenant, 0, 24)}
}

// ImageDigest is the repoDigest the fake docker provider gives every built
// image.
var ImageDigest = "sha256:" + strings.Repeat("ab", 32)

// Frame encodes one frame of Docker's multiplexed log stream (stream 1 is
// stdout, 2 stderr), as the docker provider returns container logs.
func Frame(stream byte, s string) string {
	h := make([]byte, 8)
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
	return string(h) + s
}

// Provider is the Pulumi mocks of the docker and random providers. It
// records every resource's inputs and registration, by "type::name".
type Provider struct {
	mu       sync.Mutex
	inputs   map[string]resource.PropertyMap
	requests map[string]*pulumirpc.RegisterResourceRequest
	order    []string
	// FailMigration names a tenant whose migration container exits 1.
	FailMigration string
	// Engine, when set, is told of every image build, to list what the
	// build leaves (Engine.BuildLeaves).
	Engine *Engine
}

// NewProvider returns mocks that have recorded nothing.
func NewProvider() *Provider {
	return &Provider{inputs: map[string]resource.PropertyMap{}, requests: map[string]*pulumirpc.RegisterResourceRequest{}}
}

// NewResource answers with the outputs the real provider computes from the
// inputs: generated passwords and container names, an image digest, a
// run-to-completion container's exit code and log.
func (p *Provider) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	out := args.Inputs.Copy()
	switch args.TypeToken {
	case "random:index/randomPassword:RandomPassword":
		out["result"] = resource.NewStringProperty(Password(args.Name))
	case "docker:index/image:Image":
		out["repoDigest"] = resource.NewStringProperty(ImageDigest)
		if p.Engine != nil {
			if b, ok := args.Inputs["build"]; ok && b.IsObject() {
				if a, ok := b.ObjectValue()["args"]; ok && a.IsObject() {
					if v, ok := a.ObjectValue()["POLLS_BUILD"]; ok && v.IsString() {
						p.Engine.built(v.StringValue())
					}
				}
			}
		}
	case "docker:index/secret:Secret":
		out["name"] = resource.NewStringProperty(args.Name + "-1a2b3c4")
	case "docker:index/container:Container":
		code, logs := 0, ""
		if p.FailMigration != "" && args.Name == p.FailMigration+"-migrate" {
			code = 1
			logs = Frame(1, "applying 0001_init.sql\n") + Frame(2, "error: relation \"polls\" already exists\n")
		}
		if _, named := out["name"]; !named {
			// The provider generates a name where none is given.
			out["name"] = resource.NewStringProperty(args.Name + "-1a2b3c4")
		}
		out["exitCode"] = resource.NewNumberProperty(float64(code))
		out["containerLogs"] = resource.NewStringProperty(logs)
	}
	key := args.TypeToken + "::" + args.Name
	p.mu.Lock()
	p.inputs[key] = args.Inputs
	p.requests[key] = args.RegisterRPC
	p.order = append(p.order, key)
	p.mu.Unlock()
	return ID(args.Name), out, nil
}

// Call answers provider functions with their arguments.
func (p *Provider) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return args.Args, nil
}

// Inputs returns the inputs resource typ name was declared with.
func (p *Provider) Inputs(typ, name string) (resource.PropertyMap, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in, ok := p.inputs[typ+"::"+name]
	return in, ok
}

// Request returns how resource typ name was registered (its options).
func (p *Provider) Request(typ, name string) (*pulumirpc.RegisterResourceRequest, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.requests[typ+"::"+name]
	return r, ok
}

// Requests returns how every resource was registered, by "type::name".
func (p *Provider) Requests() map[string]*pulumirpc.RegisterResourceRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.requests)
}

// Order returns the "type::name" of every resource in the order they were
// registered.
func (p *Provider) Order() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.order)
}

// Keys returns "type::name" of every resource declared, sorted.
func (p *Provider) Keys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.inputs))
}

// All returns every declared resource's inputs by "type::name".
func (p *Provider) All() map[string]resource.PropertyMap {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.inputs)
}

// CountByType returns how many resources of each type were declared.
func (p *Provider) CountByType() map[string]int {
	counts := map[string]int{}
	for _, key := range p.Keys() {
		counts[strings.SplitN(key, "::", 2)[0]]++
	}
	return counts
}
