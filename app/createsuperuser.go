package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/polls-tenants/polls/app/internal/config"
	"github.com/polls-tenants/polls/app/internal/postgres"
)

// createSuperuser creates ADMIN_USER with the password in
// ADMIN_PASSWORD_FILE, or sets the password of the existing user, so a
// rotated secret takes effect on the next run.
func createSuperuser(ctx context.Context, args []string, cfg config.Config, log *slog.Logger) error {
	fs := flag.NewFlagSet("createsuperuser", flag.ContinueOnError)
	wait := fs.Duration("wait", dbWait, "how long to wait for the database to answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	password, err := cfg.AdminPassword(os.ReadFile)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, cfg, log, *wait)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Ready(ctx); err != nil {
		return fmt.Errorf("createsuperuser needs a migrated database: %w", err)
	}
	return ensureAdmin(ctx, db, cfg.AdminUser, password, log)
}

func ensureAdmin(ctx context.Context, db *postgres.DB, username, password string, log *slog.Logger) error {
	changed, err := db.EnsureUser(ctx, username, password)
	if err != nil {
		return err
	}
	if changed {
		log.Info("admin user created or password set", "username", username)
	} else {
		log.Info("admin user unchanged", "username", username)
	}
	return nil
}
