package dockerapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNodesOnAnEngineThatIsNoManager ensures an engine that answers 503
// (a worker, or an engine in no swarm) fails Nodes with ErrNotManager and
// the engine's words, and any other failure does not.
func TestNodesOnAnEngineThatIsNoManager(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		message     string
		wantManager bool
	}{
		{"not a manager", http.StatusServiceUnavailable, `This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.`, true},
		{"worker", http.StatusServiceUnavailable, `This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state.`, true},
		{"engine failure", http.StatusInternalServerError, "raft: no elected cluster leader", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := newEngine(t, "1.41", map[string]http.HandlerFunc{
				"GET /nodes": func(w http.ResponseWriter, r *http.Request) { engineError(w, tt.status, tt.message) },
			})
			_, err := c.Nodes(t.Context())
			if err == nil {
				t.Fatal("Nodes succeeded")
			}
			if got := errors.Is(err, ErrNotManager); got != tt.wantManager {
				t.Errorf("errors.Is(%q, ErrNotManager) = %v; want %v", err, got, tt.wantManager)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not carry the engine's message %q", err, tt.message)
			}
		})
	}
}

// TestNodes ensures nodes come sorted by hostname with their readiness,
// availability and labels.
func TestNodes(t *testing.T) {
	_, c := newEngine(t, "1.41", map[string]http.HandlerFunc{
		"GET /nodes": func(w http.ResponseWriter, r *http.Request) {
			reply(w, []map[string]any{
				{"ID": "b", "Description": map[string]any{"Hostname": "n2"}, "Spec": map[string]any{"Availability": "drain"}, "Status": map[string]any{"State": "down"}},
				{"ID": "a", "Description": map[string]any{"Hostname": "n1"}, "Spec": map[string]any{"Availability": "active", "Labels": map[string]string{"polls.data.x.thor": "true"}}, "Status": map[string]any{"State": "ready"}},
			})
		},
	})
	nodes, err := c.Nodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].Hostname != "n1" || !nodes[0].Ready || nodes[0].Availability != "active" || nodes[0].Labels["polls.data.x.thor"] != "true" ||
		nodes[1].Hostname != "n2" || nodes[1].Ready || nodes[1].Availability != "drain" {
		t.Errorf("Nodes = %+v; want n1 (ready, active, labelled) then n2 (down, drain)", nodes)
	}
}

// labelEngine is a swarm of one node, n1, whose updates are versioned as
// the engine's: an update must name the node's current version, and the
// first conflicts updates fail as having raced another one.
type labelEngine struct {
	mu        sync.Mutex
	version   uint64
	labels    map[string]string
	conflicts int // updates still to fail with "update out of sequence"
	updates   int // update requests seen
}

func (l *labelEngine) routes(t *testing.T) map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET /nodes": func(w http.ResponseWriter, r *http.Request) {
			l.mu.Lock()
			defer l.mu.Unlock()
			reply(w, []map[string]any{
				{"ID": "other", "Version": map[string]any{"Index": 3}, "Description": map[string]any{"Hostname": "n0"}, "Spec": map[string]any{"Role": "worker", "Availability": "active"}},
				{"ID": "id1", "Version": map[string]any{"Index": l.version}, "Description": map[string]any{"Hostname": "n1"},
					"Spec": map[string]any{"Role": "manager", "Availability": "active", "Labels": l.labels}},
			})
		},
		"POST /nodes/{id}/update": func(w http.ResponseWriter, r *http.Request) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.updates++
			if id := r.PathValue("id"); id != "id1" {
				t.Errorf("update of node %s; want id1 (n1)", id)
			}
			var spec struct {
				Role, Availability string
				Labels             map[string]string
			}
			if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
				t.Errorf("update body: %v", err)
			}
			if spec.Role != "manager" || spec.Availability != "active" {
				t.Errorf("update spec %+v; want the node's role and availability kept", spec)
			}
			if v := r.URL.Query().Get("version"); v != fmt.Sprint(l.version) {
				engineError(w, http.StatusInternalServerError, "rpc error: code = Unknown desc = update out of sequence")
				t.Errorf("update at version %s; the node is at %d", v, l.version)
				return
			}
			// Another update lands first: the version moves on.
			l.version++
			if l.conflicts > 0 {
				l.conflicts--
				engineError(w, http.StatusInternalServerError, "rpc error: code = Unknown desc = update out of sequence")
				return
			}
			l.labels = spec.Labels
		},
	}
}

// TestLabelNode ensures a node label is set keeping the node's other labels
// and spec, is not set again when present, and an update that raced
// another ("update out of sequence") is retried at the node's new version,
// up to a bound.
func TestLabelNode(t *testing.T) {
	tests := []struct {
		name        string
		hostname    string
		labels      map[string]string
		conflicts   int
		wantUpdates int
		wantErr     string
	}{
		{"sets the label", "n1", map[string]string{"zone": "a"}, 0, 1, ""},
		{"already set", "n1", map[string]string{"zone": "a", "polls.data.x.thor": "true"}, 0, 0, ""},
		{"out of sequence, then set", "n1", map[string]string{"zone": "a"}, 2, 3, ""},
		{"out of sequence for good", "n1", map[string]string{"zone": "a"}, 1000, 11, "update out of sequence"},
		{"no such node", "n9", nil, 0, 0, `no Swarm node has hostname "n9"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &labelEngine{version: 41, labels: tt.labels, conflicts: tt.conflicts}
			_, c := newEngine(t, "1.41", l.routes(t))
			err := c.LabelNode(t.Context(), tt.hostname, "polls.data.x.thor", "true")
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("LabelNode = %v; want error %q", err, tt.wantErr)
			}
			if l.updates != tt.wantUpdates {
				t.Errorf("%d update requests; want %d", l.updates, tt.wantUpdates)
			}
			if tt.wantErr == "" && (l.labels["polls.data.x.thor"] != "true" || l.labels["zone"] != "a") {
				t.Errorf("node labels %v; want polls.data.x.thor=true beside zone=a", l.labels)
			}
		})
	}
}

// TestDigest ensures the engine is asked for a reference's digest with the
// login as X-Registry-Auth (URL-safe base64 of the JSON the engine reads),
// without the header when there is no login, and that a registry's
// refusal reaches the caller in the engine's words.
func TestDigest(t *testing.T) {
	const ref = "registry.local:5000/polls/app:1"
	const digest = "sha256:0f3c8f2a6e1b9d7c5a4e3b2d1c0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29"
	// "?>?" and "~~~" encode to '/' and '+' in standard base64: the header
	// must carry '_' and '-' instead.
	login := &RegistryAuth{Username: "deploy", Password: "?>?~~~", ServerAddress: "registry.local:5000"}
	tests := []struct {
		name    string
		auth    *RegistryAuth
		answer  func(w http.ResponseWriter)
		want    string
		wantErr string
	}{
		{"with a login", login, func(w http.ResponseWriter) {
			reply(w, map[string]any{"Descriptor": map[string]any{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": digest, "size": 1}})
		}, digest, ""},
		{"anonymous", nil, func(w http.ResponseWriter) {
			reply(w, map[string]any{"Descriptor": map[string]any{"digest": digest}})
		}, digest, ""},
		{"refused", login, func(w http.ResponseWriter) {
			engineError(w, http.StatusUnauthorized, "Head https://registry.local:5000/v2/polls/app/manifests/1: unauthorized: authentication required")
		}, "", "unauthorized: authentication required"},
		{"unknown tag", nil, func(w http.ResponseWriter) {
			engineError(w, http.StatusNotFound, "manifest unknown: manifest unknown")
		}, "", "manifest unknown"},
		{"no digest", nil, func(w http.ResponseWriter) { reply(w, map[string]any{"Descriptor": map[string]any{}}) }, "", "the registry gave no digest for " + ref},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := newEngine(t, "1.41", map[string]http.HandlerFunc{
				"GET /distribution/": func(w http.ResponseWriter, r *http.Request) {
					if got := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/distribution/"), "/json"); got != ref {
						t.Errorf("asked for %q; want %q", got, ref)
					}
					header := r.Header.Get("X-Registry-Auth")
					switch {
					case tt.auth == nil && header != "":
						t.Errorf("X-Registry-Auth %q sent without a login", header)
					case tt.auth != nil:
						if strings.ContainsAny(header, "+/") {
							t.Errorf("X-Registry-Auth %q is not URL-safe base64", header)
						}
						var got struct{ Username, Password, ServerAddress string }
						b, err := base64.URLEncoding.DecodeString(header)
						if !strings.ContainsAny(base64.StdEncoding.EncodeToString(b), "+/") {
							t.Errorf("the test's login encodes without '+' or '/': it does not tell URL-safe base64 from standard")
						}
						if err == nil {
							err = json.Unmarshal(b, &got)
						}
						if err != nil || got != (struct{ Username, Password, ServerAddress string }{"deploy", "?>?~~~", "registry.local:5000"}) {
							t.Errorf("X-Registry-Auth %q decodes to %+v (%v); want the login", header, got, err)
						}
					}
					tt.answer(w)
				},
			})
			got, err := c.Digest(t.Context(), ref, tt.auth)
			if got != tt.want || tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Digest = %q, %v; want %q, error %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestServicesFilterByLabel ensures Services asks the engine for the
// services carrying every label given.
func TestServicesFilterByLabel(t *testing.T) {
	_, c := newEngine(t, "1.41", map[string]http.HandlerFunc{
		"GET /services": func(w http.ResponseWriter, r *http.Request) {
			var f map[string]map[string]bool
			if err := json.Unmarshal([]byte(r.URL.Query().Get("filters")), &f); err != nil || len(f) != 1 ||
				!f["label"]["polls.stack=dev"] || !f["label"]["polls.role=db"] || len(f["label"]) != 2 {
				t.Errorf("filters %q; want the two labels", r.URL.Query().Get("filters"))
			}
			reply(w, []map[string]any{{"ID": "s1", "Spec": map[string]any{"Name": "dev-thor-db", "Labels": map[string]string{"polls.tenant": "thor"}}}})
		},
	})
	got, err := c.Services(t.Context(), map[string]string{"polls.stack": "dev", "polls.role": "db"})
	if err != nil || len(got) != 1 || got[0].ID != "s1" || got[0].Name != "dev-thor-db" || got[0].Labels["polls.tenant"] != "thor" {
		t.Errorf("Services = %+v, %v; want dev-thor-db", got, err)
	}
}

// The service WaitService watches in the tests below: its spec asks for
// image want, the engine fills in Runtime on the service's side only.
const (
	want = "registry.local:5000/polls/app@sha256:2222"
	old  = "registry.local:5000/polls/app@sha256:1111"
)

func template(image string) map[string]any {
	return templateSpec(image, "new")
}

// templateSpec is a task template whose environment carries spec as
// POLLS_SPEC.
func templateSpec(image, spec string) map[string]any {
	return map[string]any{"ContainerSpec": map[string]any{"Image": image, "Args": []string{"serve"}, "Env": []string{"TENANT=thor", "POLLS_SPEC=" + spec}}, "ForceUpdate": 0}
}

func task(id, image, desired, state, errMsg string, at time.Time) map[string]any {
	return map[string]any{"ID": id, "Spec": template(image), "DesiredState": desired,
		"Status": map[string]any{"Timestamp": at, "State": state, "Err": errMsg}}
}

// TestWaitService ensures WaitService returns once every replica runs the
// current spec, the declared one, and fails early, naming the service, the
// reason, the last task error and the service's log lines (demultiplexed),
// in every way it can: the spec was rolled back from the image, or from a
// change that kept the image (the digest its environment carries went
// back), the spec was changed by someone else, the update paused, a task
// cannot be placed, three tasks failed, or time ran out.
func TestWaitService(t *testing.T) {
	now := time.Now().UTC()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	logs := string(frame(1, "listening on :8000\n")) + string(frame(2, "error: database \"thor\" does not exist\n"))
	tests := []struct {
		name    string
		image   string         // the service's current image
		spec    string         // its POLLS_SPEC variable; "" for "new", the declared one
		update  map[string]any // its UpdateStatus
		updated time.Time      // its UpdatedAt
		tasks   []map[string]any
		since   time.Time // when the run began; zero: an hour ago
		within  time.Duration
		logs    func(w http.ResponseWriter)
		want    []string // substrings of the error; nil: success
	}{
		{name: "running", image: want, tasks: []map[string]any{
			task("t-old", old, "shutdown", "shutdown", "", ago(time.Minute)),
			task("t-new", want, "running", "running", "", ago(time.Second)),
		}},
		{name: "rolled back from the image", image: old, updated: ago(time.Second),
			update: map[string]any{"State": "rollback_completed", "StartedAt": ago(time.Minute), "CompletedAt": ago(time.Second),
				"Message": "rollback completed"},
			tasks: []map[string]any{task("t-old", old, "running", "running", "", ago(time.Second))},
			want: []string{"service polls-thor-app update rollback completed: rollback completed (Swarm put its previous spec back",
				"database \"thor\" does not exist"}},
		{name: "rolled back from a change that kept the image", image: want, spec: "old", updated: ago(time.Second),
			update: map[string]any{"State": "rollback_completed", "StartedAt": ago(time.Minute), "CompletedAt": ago(time.Second),
				"Message": "rollback completed"},
			tasks: []map[string]any{task("t-old", want, "running", "running", "", ago(time.Minute))},
			want:  []string{"service polls-thor-app update rollback completed: rollback completed (Swarm put its previous spec back", "`pulumi up --refresh --target` with the service's URN"}},
		{name: "rolling back from a change that kept the image", image: want, spec: "old", updated: ago(time.Second),
			update: map[string]any{"State": "rollback_started", "StartedAt": ago(time.Minute),
				"Message": "update rolled back due to failure or early termination of task t-new"},
			tasks: []map[string]any{task("t-old", want, "running", "running", "", ago(time.Minute))},
			want:  []string{"service polls-thor-app update rollback started: update rolled back due to failure or early termination of task t-new"}},
		{name: "changed by someone else", image: want, spec: "theirs", updated: ago(time.Second),
			tasks: []map[string]any{task("t-theirs", want, "running", "running", "", ago(time.Second))},
			want:  []string{"service polls-thor-app runs a spec other than the one declared, changed outside this program"}},
		{name: "update paused", image: want, updated: ago(time.Minute),
			update: map[string]any{"State": "paused", "StartedAt": ago(30 * time.Second),
				"Message": "update paused due to failure or early termination of task t-new"},
			tasks: []map[string]any{task("t-new", want, "shutdown", "failed", "task: non-zero exit (1)", ago(time.Second))},
			want: []string{"service polls-thor-app update paused: update paused due to failure or early termination of task t-new",
				"last task error: (nothing)", "listening on :8000"}},
		{name: "cannot be placed", image: want, tasks: []map[string]any{
			task("t-new", want, "running", "pending", "no suitable node (scheduling constraints not satisfied on 2 nodes)", ago(time.Minute)),
		}, want: []string{"service polls-thor-app cannot be placed: no suitable node (scheduling constraints not satisfied on 2 nodes)"}},
		{name: "three tasks failed", image: want, tasks: []map[string]any{
			task("t-1", want, "shutdown", "failed", "task: non-zero exit (1)", ago(3*time.Second)),
			task("t-2", want, "shutdown", "rejected", "starting container failed: no such image", ago(2*time.Second)),
			task("t-3", want, "shutdown", "failed", "task: non-zero exit (3)", ago(time.Second)),
			task("t-old", old, "shutdown", "failed", "an old version's failure", ago(time.Second)),
		}, want: []string{"service polls-thor-app: 3 tasks of its current version failed", "last task error: task t-3: failed: task: non-zero exit (3)",
			"listening on :8000\nerror: database \"thor\" does not exist"}},
		{name: "failed before this run, starting", image: want, since: ago(10 * time.Second), within: 1500 * time.Millisecond, tasks: []map[string]any{
			task("t-3", want, "shutdown", "failed", "task: non-zero exit (3)", ago(time.Minute)),
			task("t-1", want, "shutdown", "failed", "task: non-zero exit (1)", ago(3*time.Minute)),
			task("t-2", want, "shutdown", "failed", "task: non-zero exit (2)", ago(2*time.Minute)),
			task("t-4", want, "running", "starting", "", ago(time.Second)),
		}, want: []string{"service polls-thor-app not running within 1.5s (0 of 1 replicas)", "last task error: task t-3: failed: task: non-zero exit (3)"}},
		{name: "timed out", image: want, within: 1500 * time.Millisecond, tasks: []map[string]any{
			task("t-1", want, "shutdown", "failed", "task: non-zero exit (1)", ago(time.Second)),
			task("t-2", want, "running", "starting", "", ago(time.Second)),
		}, want: []string{"service polls-thor-app not running within 1.5s (0 of 1 replicas)", "last task error: task t-1: failed: task: non-zero exit (1)",
			"database \"thor\" does not exist"}},
		{name: "timed out, log unreadable", image: want, within: time.Second,
			tasks: []map[string]any{task("t-1", want, "running", "starting", "", ago(time.Second))},
			logs: func(w http.ResponseWriter) {
				engineError(w, http.StatusInternalServerError, "logs unavailable: the task's node is down")
			},
			want: []string{"service polls-thor-app not running within 1s (0 of 1 replicas)", "last task error: (nothing)",
				"(its log could not be read: ", "logs unavailable: the task's node is down"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			digest := tt.spec
			if digest == "" {
				digest = "new"
			}
			spec := templateSpec(tt.image, digest)
			spec["Runtime"] = "container"
			svc := map[string]any{"ID": "svc1", "UpdatedAt": tt.updated,
				"Spec": map[string]any{"Name": "polls-thor-app", "TaskTemplate": spec, "Mode": map[string]any{"Replicated": map[string]any{"Replicas": 1}}}}
			if tt.update != nil {
				svc["UpdateStatus"] = tt.update
			}
			_, c := newEngine(t, "1.41", map[string]http.HandlerFunc{
				"GET /services/svc1": func(w http.ResponseWriter, r *http.Request) { reply(w, svc) },
				"GET /tasks": func(w http.ResponseWriter, r *http.Request) {
					if f := r.URL.Query().Get("filters"); f != `{"service":{"svc1":true}}` {
						t.Errorf("tasks filters %s; want the service's", f)
					}
					reply(w, tt.tasks)
				},
				"GET /services/svc1/logs": func(w http.ResponseWriter, r *http.Request) {
					if q := r.URL.Query(); q.Get("stdout") != "1" || q.Get("stderr") != "1" || q.Get("tail") != "30" {
						t.Errorf("logs query %s; want stdout, stderr, tail 30", r.URL.RawQuery)
					}
					if tt.logs != nil {
						tt.logs(w)
						return
					}
					_, _ = w.Write([]byte(logs))
				},
			})
			c.since = tt.since
			if c.since.IsZero() {
				c.since = ago(time.Hour)
			}
			within := tt.within
			if within == 0 {
				within = time.Minute
			}
			start := time.Now()
			err := c.WaitService(t.Context(), "svc1", Declared{Image: want, Env: map[string]string{"POLLS_SPEC": "new"}}, within)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("WaitService: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("WaitService succeeded")
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if strings.ContainsAny(err.Error(), "\x00\x01\x02") {
				t.Errorf("error %q carries stream headers", err)
			}
			if tt.within == 0 && time.Since(start) > 10*time.Second {
				t.Errorf("WaitService took %s to fail; want it at once", time.Since(start))
			}
		})
	}
}

// TestWaitServiceMissing ensures a service the engine does not know fails
// the wait at once with the engine's answer.
func TestWaitServiceMissing(t *testing.T) {
	_, c := newEngine(t, "1.41", map[string]http.HandlerFunc{
		"GET /services/gone": func(w http.ResponseWriter, r *http.Request) {
			engineError(w, http.StatusNotFound, "service gone not found")
		},
	})
	err := c.WaitService(t.Context(), "gone", Declared{Image: want}, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "service gone not found") {
		t.Errorf("WaitService = %v; want the engine's not found", err)
	}
}
