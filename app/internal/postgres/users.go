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
// and known usernames take the same time. It is a bcrypt hash at
// bcrypt.DefaultCost of a random password nobody kept, written out so that
// starting a process hashes nothing (a hash is about 0.1 CPU-second, and
// every app and migration start would pay it).
const dummyHash = "$2a$10$4l033RQUDifZ5Y4ymVFN1./EUvCvcUgtPPxGYrqXc7SN9JCB1lWy."

// hashPassword is bcrypt at its default cost; a variable so a test can
// count the hashes.
var hashPassword = func(password string) ([]byte, error) {
	return bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
}

// EnsureUser makes username an administrator whose password is password:
// it creates the user, or sets the password of an existing one and ends
// its sessions when the password changed. It reports whether anything
// changed, so running it again with the same password is a no-op, which
// costs one comparison with the stored hash and no new hash (with
// polls:migrations app it runs at every start of the app).
func (db *DB) EnsureUser(ctx context.Context, username, password string) (changed bool, err error) {
	if username == "" || password == "" {
		return false, errors.New("ensure user: username and password must not be empty")
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var id int64
		var old string
		err := tx.QueryRow(ctx, "SELECT id, password_hash FROM users WHERE username = $1 FOR UPDATE", username).Scan(&id, &old)
		found := err == nil
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		case bcrypt.CompareHashAndPassword([]byte(old), []byte(password)) == nil:
			return nil
		}
		hash, err := hashPassword(password)
		if err != nil {
			return fmt.Errorf("hash password: %w", err)
		}
		if !found {
			// ON CONFLICT covers a concurrent run that created the user first.
			_, err = tx.Exec(ctx, `INSERT INTO users (username, password_hash) VALUES ($1, $2)
				ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash`, username, string(hash))
			changed = err == nil
			return err
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
		_ = bcrypt.CompareHashAndPassword([]byte(dummyHash), []byte(password))
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
