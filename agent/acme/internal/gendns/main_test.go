package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedFilesCurrent ensures the committed provider tables are what
// the lego module in go.mod gives: the companion and the program's config
// check agree with each other and with lego.
func TestGeneratedFilesCurrent(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", lego).Output()
	if err != nil {
		t.Skipf("go list -m %s: %v (module not downloaded?)", lego, err)
	}
	list, err := Scan(filepath.Join(strings.TrimSpace(string(out)), "providers", "dns"))
	if err != nil {
		t.Fatal(err)
	}
	agent, spec := Render(list)
	for path, want := range map[string][]byte{"../../zz_dnsproviders.go": agent, "../../../../spec/zz_acmedns.go": spec} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is stale: run `go run ./acme/internal/gendns` in agent/", path)
		}
	}
	for _, code := range []string{"cloudflare", "route53", "ovh", "httpreq", "exec", "digitalocean"} {
		found := false
		for _, p := range list {
			found = found || p.Code == code
		}
		if !found {
			t.Errorf("provider %s is not built in", code)
		}
	}
}
