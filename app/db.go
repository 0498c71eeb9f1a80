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

// dbWait is how long migrate, createsuperuser and serve -migrate wait for
// the database to answer by default: as long as the Pulumi program waits
// for a starting tenant at most (3 minutes, and 3 s more for each tenant
// the update deploys for the first time: 8 minutes for a cold up of 100),
// so that the app never gives up first. The program starts it only once
// the database passed its health check; that it does not answer then is
// load, not absence: a cold up of 100 tenants on a 2-core host (load
// average 311) had an app exit after the 30 s of earlier versions, on a
// healthy database, and the update failed on that exit. A database that
// is gone for good still fails the update at the program's own bound; on
// Swarm a task that waits is replaced by its health check (30 s start
// period, then 3 failures 5 s apart), as it was before.
const dbWait = 10 * time.Minute

// openDB opens the tenant's database named by the environment. With wait
// > 0 it pings until the database answers or wait has passed, for a
// migrate that starts beside its database; a database that answers and
// refuses the login (postgres.Refused) fails at once.
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
		if postgres.Refused(err) {
			db.Close()
			return nil, fmt.Errorf("database %s refused the login: %w", postgres.Describe(url), err)
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
