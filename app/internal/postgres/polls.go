package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/polls-tenants/polls/app/internal/polls"
)

// ListPolls returns all polls, newest first, without their choices.
func (db *DB) ListPolls(ctx context.Context) ([]polls.Poll, error) {
	rows, err := db.pool.Query(ctx, "SELECT id, question, created_at FROM polls ORDER BY created_at DESC, id DESC")
	if err != nil {
		return nil, fmt.Errorf("list polls: %w", err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (polls.Poll, error) {
		var p polls.Poll
		err := r.Scan(&p.ID, &p.Question, &p.CreatedAt)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list polls: %w", err)
	}
	return ps, nil
}

// Poll returns poll id with its choices in creation order, or an error
// wrapping polls.ErrNotFound.
func (db *DB) Poll(ctx context.Context, id int64) (polls.Poll, error) {
	p := polls.Poll{ID: id}
	err := db.pool.QueryRow(ctx, "SELECT question, created_at FROM polls WHERE id = $1", id).Scan(&p.Question, &p.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("poll %d: %w", id, polls.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("get poll %d: %w", id, err)
	}
	rows, err := db.pool.Query(ctx, "SELECT id, poll_id, text, votes FROM choices WHERE poll_id = $1 ORDER BY id", id)
	if err != nil {
		return p, fmt.Errorf("get choices of poll %d: %w", id, err)
	}
	p.Choices, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (polls.Choice, error) {
		var c polls.Choice
		err := r.Scan(&c.ID, &c.PollID, &c.Text, &c.Votes)
		return c, err
	})
	if err != nil {
		return p, fmt.Errorf("get choices of poll %d: %w", id, err)
	}
	return p, nil
}

// Vote adds one vote to choice choiceID of poll pollID, atomically in the
// database, or returns an error wrapping polls.ErrNotFound when the poll
// has no such choice.
func (db *DB) Vote(ctx context.Context, pollID, choiceID int64) error {
	tag, err := db.pool.Exec(ctx, "UPDATE choices SET votes = votes + 1 WHERE id = $1 AND poll_id = $2", choiceID, pollID)
	if err != nil {
		return fmt.Errorf("vote for choice %d of poll %d: %w", choiceID, pollID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("choice %d of poll %d: %w", choiceID, pollID, polls.ErrNotFound)
	}
	return nil
}

// CreatePoll stores a poll with the given question and returns its id.
// The question must already be validated.
func (db *DB) CreatePoll(ctx context.Context, question string) (int64, error) {
	var id int64
	if err := db.pool.QueryRow(ctx, "INSERT INTO polls (question) VALUES ($1) RETURNING id", question).Scan(&id); err != nil {
		return 0, fmt.Errorf("create poll: %w", err)
	}
	return id, nil
}

// UpdatePoll changes the question of poll id.
func (db *DB) UpdatePoll(ctx context.Context, id int64, question string) error {
	return oneRow(db.pool.Exec(ctx, "UPDATE polls SET question = $2 WHERE id = $1", id, question))("update poll %d", id)
}

// DeletePoll deletes poll id and its choices.
func (db *DB) DeletePoll(ctx context.Context, id int64) error {
	return oneRow(db.pool.Exec(ctx, "DELETE FROM polls WHERE id = $1", id))("delete poll %d", id)
}

// AddChoice adds a choice with no votes to poll pollID and returns its id.
func (db *DB) AddChoice(ctx context.Context, pollID int64, text string) (int64, error) {
	var id int64
	err := db.pool.QueryRow(ctx,
		"INSERT INTO choices (poll_id, text) SELECT id, $2 FROM polls WHERE id = $1 RETURNING id", pollID, text).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("poll %d: %w", pollID, polls.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("add choice to poll %d: %w", pollID, err)
	}
	return id, nil
}

// UpdateChoice changes the text of choice choiceID of poll pollID.
func (db *DB) UpdateChoice(ctx context.Context, pollID, choiceID int64, text string) error {
	return oneRow(db.pool.Exec(ctx, "UPDATE choices SET text = $3 WHERE id = $2 AND poll_id = $1", pollID, choiceID, text))(
		"update choice %d of poll %d", choiceID, pollID)
}

// DeleteChoice deletes choice choiceID of poll pollID.
func (db *DB) DeleteChoice(ctx context.Context, pollID, choiceID int64) error {
	return oneRow(db.pool.Exec(ctx, "DELETE FROM choices WHERE id = $2 AND poll_id = $1", pollID, choiceID))(
		"delete choice %d of poll %d", choiceID, pollID)
}
