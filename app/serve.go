package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/polls-tenants/polls/app/internal/config"
	"github.com/polls-tenants/polls/app/internal/postgres"
	"github.com/polls-tenants/polls/app/internal/web"
)

// version is the build's release, set with -ldflags "-X main.version=…"
// (the Dockerfile's VERSION build arg); every response names it.
var version = "dev"

// versioned names the release in every response, so operators and tests see
// which version served a request during a rollout.
func versioned(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Polls-Version", version)
		h.ServeHTTP(w, r)
	})
}

// shutdownTimeout bounds the wait for open requests after SIGTERM; it is
// shorter than Docker's 10s grace period before SIGKILL.
const shutdownTimeout = 8 * time.Second

// serve serves the site until ctx ends, then shuts down gracefully. With
// -migrate it first does what `migrate -createsuperuser` does, and serves
// only once that succeeded: a failed migration exits before it listens.
func serve(ctx context.Context, args []string, cfg config.Config, log *slog.Logger) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	migrateFirst := fs.Bool("migrate", false, "apply pending migrations and ensure the admin user (migrate -createsuperuser) before serving")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.CheckServe(); err != nil {
		return err
	}
	if *migrateFirst {
		if err := migrate(ctx, []string{"-createsuperuser"}, cfg, log); err != nil {
			return fmt.Errorf("migrate before serving: %w", err)
		}
	}
	db, err := openDB(ctx, cfg, log, 0)
	if err != nil {
		return err
	}
	defer db.Close()

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	srv := &http.Server{
		Handler:           versioned(web.New(web.Options{Tenant: cfg.Tenant, AllowedHosts: cfg.AllowedHosts, Store: db, Logger: log, Unavailable: postgres.Unavailable})),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "allowed_hosts", cfg.AllowedHosts)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}
