package deps

import (
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/polls-tenants/polls/app"

// goList runs `go list` with args and returns its output's lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// TestCoversTheBinary ensures deps imports every outside package that the
// polls binary's own packages import, so the Dockerfile's dependency layer
// compiles them all.
func TestCoversTheBinary(t *testing.T) {
	own := goList(t, "-deps", "-f", `{{if .Module}}{{if eq .Module.Path "`+module+`"}}{{.ImportPath}}{{end}}{{end}}`, module)
	if len(own) == 0 {
		t.Fatal("go list found none of the binary's packages")
	}
	have := map[string]bool{}
	for _, p := range goList(t, "-f", `{{join .Imports " "}}`, module+"/internal/deps") {
		have[p] = true
	}
	var missing []string
	seen := map[string]bool{}
	for _, p := range goList(t, append([]string{"-f", `{{join .Imports " "}}`}, own...)...) {
		if strings.HasPrefix(p, module) || have[p] || seen[p] {
			continue
		}
		seen[p] = true
		missing = append(missing, p)
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("internal/deps/deps.go does not import %s: add them so the Dockerfile's dependency layer compiles them", strings.Join(missing, ", "))
	}
}
