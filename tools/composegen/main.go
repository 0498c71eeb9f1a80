// Command composegen writes the docker-compose equivalent of the stack the
// Pulumi program deploys for tenants t01..tNN, as the baseline that
// scripts/bench-compose.sh times `pulumi up` against.
//
// Usage:
//
//	go run ./tools/composegen -n 10 -out DIR -port 8080 -project NAME [-taken CIDR,...] [-migrations app]
//	docker-compose -p NAME -f DIR/docker-compose.yml up -d
//
// It writes DIR/docker-compose.yml, DIR/nginx.conf and, for each tenant that
// has none yet, random passwords in DIR/secrets/. Existing secret files are
// kept, so regenerating with a larger -n adds tenants without changing any
// running tenant's inputs. Passwords are never printed.
//
// Equivalence with the Pulumi program: the same images, commands,
// environment, secret file paths, memory limits, init, health-check timings
// and network layout (one internal network per tenant, in the /28 the program
// plans for it from the default polls:subnetPool, around the subnets -taken
// names (other stacks' tenant networks on the engine), labelled polls.tenant; one edge network where each app has
// its tenant's name as alias); the migration is gated on the
// database being healthy and the app on the migration exiting 0 (with
// -migrations app, as polls:migrations app, there is no migrate service:
// the app, which migrates as it starts, on the database); nginx.conf
// is rendered by the repo's nginx package with the arguments the router
// component uses. The database's health check is the program's readiness
// test without its password sync, which a fresh database does not need.
// equivalence_test.go compares each container with what tenants.New
// declares, so a change to the program that is not mirrored here fails it.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "composegen:", err)
		os.Exit(1)
	}
}

// run parses args, writes the files and names them on stdout.
func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("composegen", flag.ContinueOnError)
	o := defaultOptions()
	fs.IntVar(&o.Tenants, "n", o.Tenants, "number of tenants, named t01, t02, ...")
	out := fs.String("out", "", "directory to write docker-compose.yml, nginx.conf and secrets/ into (required)")
	fs.IntVar(&o.Port, "port", o.Port, "host port nginx publishes")
	fs.StringVar(&o.Project, "project", o.Project, "name prefix of containers, as the stack prefix polls-<stack> is on the Pulumi side")
	fs.StringVar(&o.AppImage, "app-image", o.AppImage, "app image for the migrations and apps")
	fs.StringVar(&o.PostgresImage, "postgres-image", o.PostgresImage, "database image")
	fs.StringVar(&o.NginxImage, "nginx-image", o.NginxImage, "router image")
	fs.StringVar(&o.Migrations, "migrations", o.Migrations, "where migrations run, as polls:migrations: container (a migrate service per tenant) or app (the app migrates as it starts)")
	fs.DurationVar(&o.HealthInterval, "health-interval", 0, "interval of every health check (default: 2s for databases, 3s for apps, the fastest gating)")
	fs.Func("taken", "comma-separated subnets other stacks' tenant networks use on the engine; tenant subnets are planned around them, as the program does", func(v string) error {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return err
			}
			o.Taken = append(o.Taken, p)
		}
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return fmt.Errorf("usage: composegen -n N -out DIR [-port P] [-project NAME] [-taken CIDR,...] [-health-interval D] [-migrations container|app]")
	}
	files, err := write(*out, o)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintln(stdout, f)
	}
	return nil
}
