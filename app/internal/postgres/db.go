// Package postgres stores polls, users and sessions in PostgreSQL through
// pgx, and migrates the schema.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

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

// Unavailable reports whether err is a failure to reach the database: its
// name not found, its address refusing or not answering (within the
// URL's connect_timeout, if it sets one). The request never reached the
// database, so another replica, or the same one a moment later, may serve
// it. A database that answered and refused (a wrong password, no such
// database) is not unavailable: that is this replica's configuration,
// which a retry does not mend.
func Unavailable(err error) bool {
	var connect *pgconn.ConnectError
	var refused *pgconn.PgError
	return errors.As(err, &connect) && !errors.As(err, &refused)
}

// Refused reports whether the database answered err's request and refused
// the login itself: a wrong password or user (SQLSTATE class 28) or no
// such database (3D000). Waiting does not mend it, unlike a database that
// is still starting (57P03) or does not answer.
func Refused(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (strings.HasPrefix(pg.Code, "28") || pg.Code == "3D000")
}
