package postgres

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/polls-tenants/polls/app/internal/polls"
)

// oneRow turns the result of an UPDATE or DELETE of one row into an error
// with the context the returned function formats: the database error, or
// polls.ErrNotFound when no row matched.
func oneRow(tag pgconn.CommandTag, err error) func(format string, args ...any) error {
	return func(format string, args ...any) error {
		what := fmt.Sprintf(format, args...)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%s: %w", what, polls.ErrNotFound)
		}
		return nil
	}
}
