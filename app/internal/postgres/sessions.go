package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/polls-tenants/polls/app/internal/polls"
)

// CreateSession starts a session for user userID that lasts ttl and
// returns the token for the session cookie. Only the token's hash is
// stored. Expired sessions are removed on the way.
func (db *DB) CreateSession(ctx context.Context, userID int64, ttl time.Duration) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("create session: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	if _, err := db.pool.Exec(ctx, "DELETE FROM sessions WHERE expires_at < now()"); err != nil {
		return "", fmt.Errorf("create session: remove expired: %w", err)
	}
	_, err := db.pool.Exec(ctx, "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))",
		hashToken(token), userID, ttl.Seconds())
	if err != nil {
		return "", fmt.Errorf("create session: %w", err)
	}
	return token, nil
}

// SessionUser returns the user of the unexpired session token, or an
// error wrapping polls.ErrNotFound.
func (db *DB) SessionUser(ctx context.Context, token string) (polls.User, error) {
	var u polls.User
	err := db.pool.QueryRow(ctx, `SELECT u.id, u.username FROM sessions s JOIN users u ON u.id = s.user_id
		WHERE s.token_hash = $1 AND s.expires_at > now()`, hashToken(token)).Scan(&u.ID, &u.Username)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, fmt.Errorf("session: %w", polls.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("look up session: %w", err)
	}
	return u, nil
}

// DeleteSession ends session token; ending an unknown session is no error.
func (db *DB) DeleteSession(ctx context.Context, token string) error {
	if _, err := db.pool.Exec(ctx, "DELETE FROM sessions WHERE token_hash = $1", hashToken(token)); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}
