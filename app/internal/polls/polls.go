// Package polls holds the domain types of the polls app and their
// validation. It imports no database or HTTP code.
package polls

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxTextLen is the longest question or choice text, in characters.
const MaxTextLen = 200

// ErrNotFound is returned when a poll, choice, user or session does not exist.
var ErrNotFound = errors.New("not found")

// ErrBadLogin is returned for an unknown user or a wrong password; the two
// are not told apart.
var ErrBadLogin = errors.New("wrong username or password")

// Poll is a question with the choices people can vote for.
type Poll struct {
	ID        int64
	Question  string
	CreatedAt time.Time
	Choices   []Choice
}

// TotalVotes returns the sum of the votes of all choices.
func (p Poll) TotalVotes() int {
	n := 0
	for _, c := range p.Choices {
		n += c.Votes
	}
	return n
}

// Choice is one answer to a poll and the votes it received.
type Choice struct {
	ID     int64
	PollID int64
	Text   string
	Votes  int
}

// Percent returns c's share of total votes, rounded down, or 0 when total is 0.
func (c Choice) Percent(total int) int {
	if total == 0 {
		return 0
	}
	return c.Votes * 100 / total
}

// User is an administrator who may edit polls.
type User struct {
	ID       int64
	Username string
}

// ValidateText checks a question or choice text and returns it trimmed.
// field names the text in the error message ("question", "choice").
func ValidateText(field, s string) (string, error) {
	s = strings.TrimSpace(s)
	switch n := utf8.RuneCountInString(s); {
	case n == 0:
		return "", fmt.Errorf("%s must not be empty", field)
	case n > MaxTextLen:
		return "", fmt.Errorf("%s is %d characters long; at most %d are allowed", field, n, MaxTextLen)
	}
	return s, nil
}
