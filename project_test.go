package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/polls-tenants/polls/spec"
)

// project is the part of Pulumi.yaml this test reads.
type project struct {
	Name    string `yaml:"name"`
	Runtime struct {
		Name    string `yaml:"name"`
		Options struct {
			BuildTarget string `yaml:"buildTarget"`
		} `yaml:"options"`
	} `yaml:"runtime"`
	Config map[string]struct {
		Type        string `yaml:"type"`
		Description string `yaml:"description"`
		Default     any    `yaml:"default"`
		Secret      bool   `yaml:"secret"`
	} `yaml:"config"`
}

// TestPulumiYAMLDescribesEveryKey ensures Pulumi.yaml declares exactly the
// keys the program reads, each with a description, and that its defaults
// parse to the same Stack as the program's own defaults.
func TestPulumiYAMLDescribesEveryKey(t *testing.T) {
	raw, err := os.ReadFile("Pulumi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var p project
	if err := yaml.Unmarshal(raw, &p); err != nil {
		t.Fatalf("parse Pulumi.yaml: %v", err)
	}
	if p.Name != spec.Namespace || p.Runtime.Name != "go" {
		t.Errorf("project = %q runtime %q; want %q runtime go", p.Name, p.Runtime.Name, spec.Namespace)
	}
	// A fixed build target lets `go build` skip relinking an up-to-date
	// program; the language host otherwise links a new temporary binary on
	// every preview and up. It must stay out of git.
	gitignore, _ := os.ReadFile(".gitignore")
	if bt := p.Runtime.Options.BuildTarget; bt == "" || !strings.Contains(string(gitignore), "/"+strings.SplitN(bt, "/", 2)[0]+"/") {
		t.Errorf("runtime.options.buildTarget = %q; want a path under a directory .gitignore lists", bt)
	}
	declared := []string{}
	defaults := map[string]string{}
	for k, c := range p.Config {
		declared = append(declared, k)
		if c.Description == "" {
			t.Errorf("Pulumi.yaml: config %q has no description", k)
		}
		switch v := c.Default.(type) {
		case nil:
		case string:
			defaults[k] = v
		case int:
			defaults[k] = fmt.Sprint(v)
		default:
			b, _ := json.Marshal(v)
			defaults[k] = string(b)
		}
	}
	want := append([]string(nil), spec.Keys...)
	sort.Strings(want)
	sort.Strings(declared)
	if diff := cmp.Diff(want, declared); diff != "" {
		t.Errorf("keys declared in Pulumi.yaml (-program +yaml):\n%s", diff)
	}
	if !strings.Contains(p.Config["tlsKey"].Description, "--secret") {
		t.Error("Pulumi.yaml: tlsKey's description must say it is set with --secret")
	}
	fromYAML, err := spec.Parse(defaults)
	if err != nil {
		t.Fatalf("Pulumi.yaml defaults do not parse: %v", err)
	}
	fromCode, err := spec.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fromCode, fromYAML, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Pulumi.yaml defaults differ from the program's (-code +yaml):\n%s", diff)
	}
}

// TestStackFiles ensures the committed example stacks are valid: dev is
// thor and potter with defaults otherwise, local is the same tenants on
// locally built images.
func TestStackFiles(t *testing.T) {
	tests := []struct {
		file   string
		images string
	}{
		{"Pulumi.dev.yaml", "postgres:17"},
		{"Pulumi.local.yaml", "polls-local/postgres:15"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			values, _ := stackValues(t, tt.file)
			s, err := spec.Parse(values)
			if err != nil {
				t.Fatalf("%s: %v", tt.file, err)
			}
			var names []string
			for _, tn := range s.Tenants {
				names = append(names, tn.Name)
			}
			if diff := cmp.Diff([]string{"potter", "thor"}, names); diff != "" {
				t.Errorf("tenants (-want +got):\n%s", diff)
			}
			if s.Domain != "polls.local" || s.HTTPPort != 8080 || s.TLS != nil || s.PostgresImage != tt.images {
				t.Errorf("stack = domain %q port %d TLS %v postgres %q; want polls.local, 8080, no TLS, %s", s.Domain, s.HTTPPort, s.TLS != nil, s.PostgresImage, tt.images)
			}
		})
	}
}

// stackValues reads a Pulumi.<stack>.yaml's values of the project namespace
// the way the engine passes them to the program (lists and maps as JSON),
// and which keys hold encrypted (secure) values, which it cannot decrypt.
func stackValues(t *testing.T, path string) (values map[string]string, secure map[string]bool) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Config map[string]any `yaml:"config"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	values, secure = map[string]string{}, map[string]bool{}
	for k, v := range f.Config {
		key, ok := strings.CutPrefix(k, spec.Namespace+":")
		if !ok {
			continue
		}
		switch v := v.(type) {
		case string:
			values[key] = v
		case int:
			values[key] = fmt.Sprint(v)
		case map[string]any:
			if _, ok := v["secure"]; ok {
				secure[key] = true
				continue
			}
			b, _ := json.Marshal(v)
			values[key] = string(b)
		default:
			b, _ := json.Marshal(v)
			values[key] = string(b)
		}
	}
	return values, secure
}
