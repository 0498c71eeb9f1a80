// Command polls is the Pulumi program that runs one web app for many tenants
// on Docker, each tenant fully isolated: its own app container, its own
// PostgreSQL and its own private network, behind one nginx router whose
// config is rendered from the tenant list in stack config.
package main

import (
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

func main() {
	if args, ok := os.LookupEnv(watcherEnv); ok {
		// Started by the program itself, to clean up after a failed build.
		os.Exit(runWatcher(args))
	}
	pulumi.Run(program(dockerEngine))
}
