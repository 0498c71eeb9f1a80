// Package postgres stores polls, users and sessions in PostgreSQL through
// pgx, and migrates the schema.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ConnectTimeout bounds a new connection, name lookup included, where the
// URL sets no connect_timeout. A database on the same network accepts in
// milliseconds; one that cannot be reached (a replica cut off from it, a
// database that is restarting) fails the request in this long (see
// Unavailable) instead of holding it while TCP retries its SYN.
const ConnectTimeout = 2 * time.Second

// DB is the store of one tenant's database.
type DB struct {
	pool *pgxpool.Pool
}

// Open connects to the database at url. The pool connects lazily, so Open
// succeeds while the database is down; Ping tells whether it is up.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors may quote the URL, password included.
		return nil, fmt.Errorf("parse database url (%s): invalid connection string", Describe(url))
	}
	bound(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", Describe(url), err)
	}
	return &DB{pool: pool}, nil
}

// Close closes all connections.
func (db *DB) Close() { db.pool.Close() }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.pool.Ping(ctx) }

// Describe returns url without secrets, as user@host:port/database, fit
// for logs. It returns "(unparseable)" when url cannot be parsed.
func Describe(url string) string {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return "(unparseable)"
	}
	c := cfg.ConnConfig
	return c.User + "@" + c.Host + ":" + strconv.Itoa(int(c.Port)) + "/" + c.Database
}

// bound bounds a new connection by ConnectTimeout, unless the URL has its
// own connect_timeout, and the name lookup before it (pgx starts that
// clock after the lookup).
func bound(cfg *pgxpool.Config) {
	c := cfg.ConnConfig
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = ConnectTimeout
	}
	timeout, lookup := c.ConnectTimeout, c.LookupFunc
	c.LookupFunc = func(ctx context.Context, host string) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return lookup(ctx, host)
	}
}

// Unavailable reports whether err is a failure to reach the database: its
// name not found, its address refusing or not answering within
// ConnectTimeout. The request never reached the database, so another
// replica, or the same one a moment later, may serve it. A database that
// answered and refused (a wrong password, no such database) is not
// unavailable: that is this replica's configuration, which a retry does
// not mend.
func Unavailable(err error) bool {
	var connect *pgconn.ConnectError
	var refused *pgconn.PgError
	return errors.As(err, &connect) && !errors.As(err, &refused)
}
