// Command gendns writes the DNS providers the certificate companion is
// built with: agent/acme/zz_dnsproviders.go (each provider's constructor)
// and spec/zz_acmedns.go (each provider's documented variables, which the
// Pulumi program checks polls:acmeDnsCredentials against before anything
// changes). Both come from the lego module in go.mod, so they never
// disagree with it.
//
// Every lego DNS provider whose code imports only the standard library,
// golang.org/x and the modules in allowed is included: the others bring
// in large cloud SDKs (or modules the module proxy does not serve).
//
// Run from agent/: go run ./acme/internal/gendns
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

const lego = "github.com/go-acme/lego/v5"

// allowed are the modules besides the standard library and golang.org/x
// that an included provider may import.
var allowed = []string{
	"github.com/miekg/dns",
	"github.com/cenkalti/backoff/",
	"github.com/ovh/go-ovh/",
	"github.com/nrdcg/porkbun",
	"github.com/nrdcg/goacmedns",
	"github.com/bodgit/tsig",
	"github.com/aws/aws-sdk-go-v2",
	"github.com/vultr/govultr/",
	"github.com/transip/gotransip/",
}

// shutDown are providers lego still ships but marks deprecated because the
// service behind them is gone.
var shutDown = []string{"stackpath"}

type provider struct {
	Code, Name              string
	Credentials, Additional []string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gendns:", err)
		os.Exit(1)
	}
}

func run() error {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", lego).Output()
	if err != nil {
		return fmt.Errorf("locate %s: %w", lego, err)
	}
	root := filepath.Join(strings.TrimSpace(string(out)), "providers", "dns")
	providers, err := Scan(root)
	if err != nil {
		return err
	}
	agent, spec := Render(providers)
	if err := os.WriteFile("acme/zz_dnsproviders.go", agent, 0o644); err != nil {
		return err
	}
	return os.WriteFile("../spec/zz_acmedns.go", spec, 0o644)
}

// Scan reads lego's providers/dns directory and returns the providers that
// qualify, sorted by code.
func Scan(root string) ([]provider, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var list []provider
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "internal" || slices.Contains(shutDown, e.Name()) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		ok, err := qualifies(root, dir)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		p, err := readTOML(filepath.Join(dir, e.Name()+".toml"))
		if err != nil {
			return nil, err
		}
		if p.Code != e.Name() {
			continue // a provider kept under another code's directory
		}
		list = append(list, p)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Code < list[j].Code })
	return list, nil
}

// qualifies reports whether the provider in dir, and the lego packages it
// imports under providers/dns, import nothing outside allowed.
func qualifies(root, dir string) (bool, error) {
	seen := map[string]bool{}
	var check func(dir string) (bool, error)
	check = func(dir string) (bool, error) {
		if seen[dir] {
			return true, nil
		}
		seen[dir] = true
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				return false, err
			}
			for _, imp := range parsed.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				switch {
				case !strings.Contains(strings.Split(path, "/")[0], "."), strings.HasPrefix(path, "golang.org/x/"):
				case strings.HasPrefix(path, lego+"/providers/dns/"):
					ok, err := check(filepath.Join(root, strings.TrimPrefix(path, lego+"/providers/dns/")))
					if !ok || err != nil {
						return ok, err
					}
				case strings.HasPrefix(path, lego+"/"):
				default:
					if !hasAllowedPrefix(path) {
						return false, nil
					}
				}
			}
		}
		return true, nil
	}
	return check(dir)
}

func hasAllowedPrefix(path string) bool {
	for _, a := range allowed {
		if strings.HasPrefix(path, a) {
			return true
		}
	}
	return false
}

// readTOML reads the provider's documentation file: its code and name and
// the keys of its Configuration.Credentials and .Additional tables.
func readTOML(path string) (provider, error) {
	f, err := os.Open(path)
	if err != nil {
		return provider{}, err
	}
	defer f.Close()
	var p provider
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		switch section {
		case "":
			switch key {
			case "Code":
				p.Code, _ = strconv.Unquote(strings.TrimSpace(value))
			case "Name":
				p.Name, _ = strconv.Unquote(strings.TrimSpace(value))
			}
		case "[Configuration.Credentials]":
			p.Credentials = append(p.Credentials, key)
		case "[Configuration.Additional]":
			p.Additional = append(p.Additional, key)
		}
	}
	return p, sc.Err()
}

// Render returns the two generated files.
func Render(list []provider) (agent, spec []byte) {
	var a, s bytes.Buffer
	fmt.Fprintf(&a, "// Code generated by go run ./acme/internal/gendns; DO NOT EDIT.\n\npackage acme\n\nimport (\n\t\"github.com/go-acme/lego/v5/challenge\"\n")
	for _, p := range list {
		fmt.Fprintf(&a, "\t%q\n", lego+"/providers/dns/"+p.Code)
	}
	fmt.Fprintf(&a, ")\n\n// dnsProviders are the lego DNS providers this build includes, by code.\nvar dnsProviders = map[string]func() (challenge.Provider, error){\n")
	for _, p := range list {
		fmt.Fprintf(&a, "\t%q: func() (challenge.Provider, error) { return %s.NewDNSProvider() },\n", p.Code, p.Code)
	}
	fmt.Fprintf(&a, "}\n")

	fmt.Fprintf(&s, "// Code generated by go run ./acme/internal/gendns in agent/; DO NOT EDIT.\n\npackage spec\n\n")
	fmt.Fprintf(&s, "// DNSProviders are the lego DNS providers the certificate companion is\n// built with, by code, with the variables lego documents for each.\nvar DNSProviders = map[string]DNSProvider{\n")
	for _, p := range list {
		fmt.Fprintf(&s, "\t%q: {Name: %q, Credentials: %#v, Additional: %#v},\n", p.Code, p.Name, orEmpty(p.Credentials), orEmpty(p.Additional))
	}
	fmt.Fprintf(&s, "}\n")
	af, err := format.Source(a.Bytes())
	if err != nil {
		panic(err)
	}
	sf, err := format.Source(s.Bytes())
	if err != nil {
		panic(err)
	}
	return af, sf
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
