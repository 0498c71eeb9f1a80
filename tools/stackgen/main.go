// Command stackgen writes the Docker Swarm stack file equivalent of what the
// Pulumi program deploys with polls:platform swarm for tenants t01..tNN, as
// the baseline scripts/bench-swarm.sh times `pulumi up` against.
//
// Usage:
//
//	go run ./tools/stackgen -n 10 -out DIR -nodes HOST1,HOST2 -port 8080 -project NAME \
//	    -app-image REF -postgres-image REF [-nginx-image REF] [-migrations container|app]
//	cd DIR && docker stack deploy --with-registry-auth -c docker-stack.yml NAME
//
// It writes DIR/docker-stack.yml, DIR/nginx.conf and, for each tenant that
// has none yet, random passwords in DIR/secrets/ (kept on a rerun, so a
// regenerated file changes no secret). Passwords are never printed.
//
// Equivalence with the program (package swarm): per tenant an internal,
// attachable overlay network; its database a one-replica service pinned
// with node.hostname==<node> (the nodes alternate as package placement
// places new tenants on an empty cluster), its password a Docker secret
// file, its data a volume, stop-first; its app a service with the
// program's replicas (2), spread over nodes, the same health check,
// rolled start-first one task at a time and rolled back on failure; the
// same images, arguments, environment, secret file names, health-check
// timings, memory limits and endpoint mode (dnsrr); one nginx router
// service pinned to the manager, publishing its port in host mode, its
// config (rendered by the nginx package, upstream <app service>:8000 per
// tenant) a Docker config. What a stack file cannot say: gating. The
// migration runs as a one-replica service on the manager restarted on
// failure (the docker CLI's stack files know no replicated-job mode), and
// the app starts without waiting for it. With -migrations app (as
// polls:migrations app) there is no migration service: each app task
// migrates as it starts. equivalence_test.go compares each service with
// what swarm/*.go declares, for both settings.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "stackgen:", err)
		os.Exit(1)
	}
}

// run parses args, writes the files and names them on stdout.
func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("stackgen", flag.ContinueOnError)
	o := defaultOptions()
	fs.IntVar(&o.Tenants, "n", o.Tenants, "number of tenants, named t01, t02, ...")
	out := fs.String("out", "", "directory to write docker-stack.yml, nginx.conf and secrets/ into (required)")
	fs.IntVar(&o.Port, "port", o.Port, "port the router publishes on the manager (host mode)")
	fs.StringVar(&o.Project, "project", o.Project, "stack name, and the value of the polls.stack labels")
	fs.StringVar(&o.AppImage, "app-image", o.AppImage, "app image for the migrations and apps (one every node can pull)")
	fs.StringVar(&o.PostgresImage, "postgres-image", o.PostgresImage, "database image (one every node can pull)")
	fs.StringVar(&o.NginxImage, "nginx-image", o.NginxImage, "router image (the router runs on the manager)")
	fs.StringVar(&o.Migrations, "migrations", o.Migrations, "polls:migrations: container (a migrate service per tenant) or app (each app task migrates as it starts)")
	fs.Func("nodes", "comma-separated hostnames of the cluster's nodes (required): databases are placed over them", func(v string) error {
		for n := range strings.SplitSeq(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				o.Nodes = append(o.Nodes, n)
			}
		}
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return fmt.Errorf("usage: stackgen -n N -out DIR -nodes HOST,... [-port P] [-project NAME] [-app-image REF] [-postgres-image REF] [-nginx-image REF] [-migrations container|app]")
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
