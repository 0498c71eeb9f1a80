// Command polls-backup is polls-agent's backup role alone: the same
// subcommands as `polls-agent backup` (agent, check, status, ...), in a
// binary without the ACME companion and its DNS providers.
//
// One backup agent runs per tenant, all the time, so what the binary costs
// is paid per tenant. polls-agent links lego's DNS providers, whose
// package initialisation allocates about 2 MiB and takes about 14 ms of
// CPU at every start; this binary idles at about 3 MiB of anonymous memory
// against 5.5 MiB, and starts in about 5 ms. Operators keep typing
// `polls-agent backup ...`: both run the same code (agent/backup).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/polls-tenants/polls/agent/backup"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := backup.Main(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "polls-backup:", err)
		os.Exit(1)
	}
}
