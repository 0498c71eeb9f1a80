package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/polls-tenants/polls/app/internal/config"
	"github.com/polls-tenants/polls/app/internal/postgres"
)

// migrate applies the pending migrations and, with -createsuperuser, then
// ensures the admin user.
func migrate(ctx context.Context, args []string, cfg config.Config, log *slog.Logger) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	withSuperuser := fs.Bool("createsuperuser", false, "also create the admin user or reset its password, as createsuperuser does")
	wait := fs.Duration("wait", dbWait, "how long to wait for the database to answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// Read the password before changing anything, so a missing file fails fast.
	var password string
	if *withSuperuser {
		var err error
		if password, err = cfg.AdminPassword(os.ReadFile); err != nil {
			return err
		}
	}
	db, err := openDB(ctx, cfg, log, *wait)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	log.Info("migrated", "applied", applied, "version", postgres.LatestVersion)
	if *withSuperuser {
		return ensureAdmin(ctx, db, cfg.AdminUser, password, log)
	}
	return nil
}
