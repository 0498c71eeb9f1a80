package dockerapi

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sync"
	"testing"

	"github.com/moby/moby/client"
)

// fakeEngine is an httptest Docker engine: it answers /_ping with its API
// version, as an engine does, and serves the routes a test gives it, by
// method and unversioned path ("GET /nodes"), so every test also checks
// that requests are made at the negotiated version.
type fakeEngine struct {
	*httptest.Server
	mu       sync.Mutex
	versions []string // the API version of each request
	requests []string // "GET /nodes", in order
}

var versioned = regexp.MustCompile(`^/v([0-9]+\.[0-9]+)(/.*)$`)

// newEngine starts a fake engine of API version api and returns it with a
// client of it. A request to a route the test did not give fails the test.
func newEngine(t *testing.T, api string, routes map[string]http.HandlerFunc) (*fakeEngine, *Client) {
	t.Helper()
	mux := http.NewServeMux()
	for pattern, h := range routes {
		mux.HandleFunc(pattern, h)
	}
	e := &fakeEngine{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_ping" {
			w.Header().Set("Api-Version", api)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte("OK"))
			return
		}
		m := versioned.FindStringSubmatch(r.URL.Path)
		if m == nil {
			t.Errorf("%s %s: not versioned; want /v%s/…", r.Method, r.URL.Path, api)
			engineError(w, http.StatusBadRequest, "unversioned path")
			return
		}
		e.mu.Lock()
		e.versions = append(e.versions, m[1])
		e.requests = append(e.requests, r.Method+" "+m[2])
		e.mu.Unlock()
		r.URL.Path, r.URL.RawPath = m[2], ""
		if _, pattern := mux.Handler(r); pattern == "" {
			t.Errorf("unexpected request %s %s", r.Method, r.URL)
			engineError(w, http.StatusNotFound, "page not found")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(e.Close)
	c, err := New("tcp://" + e.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return e, c
}

// seen returns the API versions the engine was asked for, once each, and
// the requests made.
func (e *fakeEngine) seen() (versions, requests []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v := slices.Clone(e.versions)
	slices.Sort(v)
	return slices.Compact(v), slices.Clone(e.requests)
}

// reply answers v as JSON.
func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// engineError answers an engine error: a JSON message with the status.
func engineError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// frame is one frame of a multiplexed stream: stream 1 is stdout, 2 stderr.
func frame(stream byte, s string) []byte {
	h := make([]byte, 8, 8+len(s))
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
	return append(h, s...)
}

// TestNegotiatesTheAPIVersion ensures every request is made at the API
// version negotiated with the engine: the engine's own where the client
// knows it (1.41 is Docker 20.10's), the client's newest where the engine
// is newer.
func TestNegotiatesTheAPIVersion(t *testing.T) {
	tests := []struct{ engine, want string }{
		{"1.41", "1.41"},
		{"1.44", "1.44"},
		{"1.99", client.MaxAPIVersion},
	}
	for _, tt := range tests {
		t.Run(tt.engine, func(t *testing.T) {
			e, c := newEngine(t, tt.engine, map[string]http.HandlerFunc{
				"GET /networks": func(w http.ResponseWriter, r *http.Request) {
					reply(w, []map[string]any{{"Name": "bridge", "IPAM": map[string]any{"Config": []map[string]string{
						{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}, {"Subnet": "fd00::/64"}}}}})
				},
			})
			for range 2 {
				nets, err := c.Networks(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if len(nets) != 1 || len(nets[0].Subnets) != 1 || nets[0].Subnets[0].String() != "172.17.0.0/16" ||
					nets[0].Gateways[nets[0].Subnets[0]].String() != "172.17.0.1" {
					t.Errorf("Networks = %+v; want bridge with its IPv4 subnet and gateway only", nets)
				}
			}
			if v, _ := e.seen(); !slices.Equal(v, []string{tt.want}) {
				t.Errorf("requests made at API versions %v; want only %s", v, tt.want)
			}
		})
	}
}
