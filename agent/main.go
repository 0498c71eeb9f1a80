// Command polls-agent runs the stack's own helpers next to the tenants'
// containers. One binary, one image, several roles, each a subcommand:
//
//	polls-agent backup ...   a tenant's backup agent and its commands
//	                         (status, check, drill, ...)
//	polls-agent acme ...     the router's certificate companion and its
//	                         commands (run, status, renew, providers)
//	polls-agent metrics ...  the stack's metrics exporter (serve, check)
//
// The databases' entrypoint is a binary of its own, cmd/pgstart, so that
// the database image changes only when it does.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/polls-tenants/polls/agent/acme"
	"github.com/polls-tenants/polls/agent/backup"
	"github.com/polls-tenants/polls/agent/metrics"
)

const usage = "usage: polls-agent backup|acme|metrics SUBCOMMAND ...\n" + backup.Usage + "\n" + metrics.Usage

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "polls-agent:", err)
		os.Exit(1)
	}
}

// run dispatches on the subcommand in args[0].
func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no subcommand given; %s", usage)
	}
	switch name, rest := args[0], args[1:]; name {
	case "backup":
		return backup.Main(ctx, rest, os.Stdout)
	case "acme":
		return acme.Main(ctx, rest, os.Stdout)
	case "metrics":
		return metrics.Main(ctx, rest, os.Stdout)
	default:
		return fmt.Errorf("unknown subcommand %q; %s", name, usage)
	}
}
