package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/polls-tenants/polls/app/internal/config"
	"github.com/polls-tenants/polls/app/internal/postgres"
)

// openDB opens the tenant's database named by the environment. With wait
// > 0 it pings until the database answers or wait has passed, for a
// migrate that starts beside its database.
func openDB(ctx context.Context, cfg config.Config, log *slog.Logger, wait time.Duration) (*postgres.DB, error) {
	url, err := cfg.ResolveDatabaseURL(os.ReadFile)
	if err != nil {
		return nil, err
	}
	db, err := postgres.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	log.Info("database", "db", postgres.Describe(url))
	if wait <= 0 {
		return db, nil
	}
	deadline := time.Now().Add(wait)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := db.Ping(pctx)
		cancel()
		if err == nil {
			return db, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			db.Close()
			return nil, fmt.Errorf("database %s did not answer within %s: %w", postgres.Describe(url), wait, err)
		}
		log.Warn("waiting for database", "db", postgres.Describe(url), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
