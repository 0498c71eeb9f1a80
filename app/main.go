// Command polls serves one tenant's polls site and manages its database.
//
// Usage:
//
//	polls serve [-migrate]           serve the site on LISTEN_ADDR, migrating first
//	polls migrate [-createsuperuser] apply database migrations
//	polls createsuperuser            create the admin or reset its password
//	polls healthcheck [-path /readyz] GET a probe on LISTEN_ADDR; exit 0 if 2xx
//
// See README.md for the environment it reads.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/polls-tenants/polls/app/internal/config"
)

const usage = "usage: polls serve [-migrate] | migrate [-createsuperuser] [-wait 10m] | createsuperuser [-wait 10m] | healthcheck [-path /readyz] [-timeout 2s]"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		// run has logged the error.
		os.Exit(1)
	}
}

// run runs the subcommand named in args[1] and logs its failure, as JSON
// lines on stdout that carry the tenant's name.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg := config.FromEnv(getenv)
	log := slog.New(slog.NewJSONHandler(stdout, nil)).With("tenant", cfg.Tenant)
	err := dispatch(ctx, args, cfg, log)
	if err != nil {
		log.Error("command failed", "args", args[1:], "err", err)
	}
	return err
}

func dispatch(ctx context.Context, args []string, cfg config.Config, log *slog.Logger) error {
	if len(args) < 2 {
		return errors.New("no subcommand given; " + usage)
	}
	name, rest := args[1], args[2:]
	switch name {
	case "serve":
		return serve(ctx, rest, cfg, log)
	case "migrate":
		return migrate(ctx, rest, cfg, log)
	case "createsuperuser":
		return createSuperuser(ctx, rest, cfg, log)
	case "healthcheck":
		return healthcheck(ctx, rest, cfg)
	default:
		return fmt.Errorf("unknown subcommand %q; %s", name, usage)
	}
}
