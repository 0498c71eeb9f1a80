package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/polls-tenants/polls/app/internal/polls"
)

// dummyHash is compared against when the user does not exist, so unknown
// and known usernames take the same time.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("polls-dummy-password"), bcrypt.DefaultCost)

// EnsureUser makes username an administrator whose password is password:
// it creates the user, or sets the password of an existing one and ends
// its sessions when the password changed. It reports whether anything
// changed, so running it again with the same password is a no-op.
func (db *DB) EnsureUser(ctx context.Context, username, password string) (changed bool, err error) {
	if username == "" || password == "" {
		return false, errors.New("ensure user: username and password must not be empty")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return false, fmt.Errorf("ensure user %s: hash password: %w", username, err)
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var id int64
		var old string
		err := tx.QueryRow(ctx, "SELECT id, password_hash FROM users WHERE username = $1 FOR UPDATE", username).Scan(&id, &old)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// ON CONFLICT covers a concurrent run that created the user first.
			_, err = tx.Exec(ctx, `INSERT INTO users (username, password_hash) VALUES ($1, $2)
				ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash`, username, string(hash))
			changed = err == nil
			return err
		case err != nil:
			return err
		case bcrypt.CompareHashAndPassword([]byte(old), []byte(password)) == nil:
			return nil
		}
		if _, err := tx.Exec(ctx, "UPDATE users SET password_hash = $2 WHERE id = $1", id, string(hash)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM sessions WHERE user_id = $1", id); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("ensure user %s: %w", username, err)
	}
	return changed, nil
}

// Authenticate returns the user whose username and password match, or
// polls.ErrBadLogin.
func (db *DB) Authenticate(ctx context.Context, username, password string) (polls.User, error) {
	u := polls.User{Username: username}
	var hash string
	err := db.pool.QueryRow(ctx, "SELECT id, password_hash FROM users WHERE username = $1", username).Scan(&u.ID, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return polls.User{}, polls.ErrBadLogin
	}
	if err != nil {
		return polls.User{}, fmt.Errorf("authenticate %s: %w", username, err)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return polls.User{}, polls.ErrBadLogin
	}
	return u, nil
}
