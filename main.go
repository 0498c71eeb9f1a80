// Command polls is the Pulumi program that runs one web app for many tenants
// on Docker, each tenant fully isolated: its own app container, its own
// PostgreSQL and its own private network, behind one nginx router whose
// config is rendered from the tenant list in stack config.
package main

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

func main() {
	pulumi.Run(program(dockerEngine))
}
