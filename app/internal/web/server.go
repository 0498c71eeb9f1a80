// Package web serves the polls site and its admin area over HTTP. The
// server is a plain http.Handler; it reaches the database through Store.
package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/polls-tenants/polls/app/internal/polls"
)

// Store is what the web server needs from the database.
type Store interface {
	// Ready returns nil when the database answers with the latest schema.
	Ready(ctx context.Context) error

	ListPolls(ctx context.Context) ([]polls.Poll, error)
	Poll(ctx context.Context, id int64) (polls.Poll, error)
	Vote(ctx context.Context, pollID, choiceID int64) error
	CreatePoll(ctx context.Context, question string) (int64, error)
	UpdatePoll(ctx context.Context, id int64, question string) error
	DeletePoll(ctx context.Context, id int64) error
	AddChoice(ctx context.Context, pollID int64, text string) (int64, error)
	UpdateChoice(ctx context.Context, pollID, choiceID int64, text string) error
	DeleteChoice(ctx context.Context, pollID, choiceID int64) error

	Authenticate(ctx context.Context, username, password string) (polls.User, error)
	CreateSession(ctx context.Context, userID int64, ttl time.Duration) (string, error)
	SessionUser(ctx context.Context, token string) (polls.User, error)
	DeleteSession(ctx context.Context, token string) error
}

// Options configures a server.
type Options struct {
	// Tenant is the name shown on every page.
	Tenant string
	// AllowedHosts are the Host header values answered, as in
	// config.HostAllowed; other hosts get 400. The probes /healthz and
	// /readyz answer any host, so container health checks need no Host.
	AllowedHosts []string
	// Store is the tenant's database.
	Store Store
	// Logger receives one line per request and every server error.
	Logger *slog.Logger
	// Unavailable reports whether a Store error means the database could
	// not be reached; such a request is answered 503 with Retry-After, not
	// 500, and once the database has not answered for 10 s every page is
	// (see outage). Nil: every Store error is a 500.
	Unavailable func(error) bool
}

// sessionTTL is how long an admin login lasts.
const sessionTTL = 12 * time.Hour

type server struct {
	Options
	outage *outage
}

// New returns the site's handler.
func New(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &server{Options: opts, outage: newOutage(func(ctx context.Context) error { return opts.Store.Ready(ctx) }, opts.Unavailable)}
	mux := http.NewServeMux()
	s.routes(mux)
	return s.logRequests(s.recoverPanics(s.checkHost(secureHeaders(s.failFast(s.csrf(mux))))))
}

func (s *server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)

	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /polls/{id}", s.detail)
	mux.HandleFunc("POST /polls/{id}/vote", s.vote)
	mux.HandleFunc("GET /polls/{id}/results", s.results)

	mux.HandleFunc("GET /admin/login", s.loginForm)
	mux.HandleFunc("POST /admin/login", s.login)
	mux.HandleFunc("POST /admin/logout", s.logout)
	mux.HandleFunc("GET /admin", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin/", http.StatusMovedPermanently)
	})
	mux.Handle("GET /admin/{$}", s.requireAdmin(s.adminIndex))
	mux.Handle("POST /admin/polls", s.requireAdmin(s.adminCreatePoll))
	mux.Handle("GET /admin/polls/{id}", s.requireAdmin(s.adminEditPoll))
	mux.Handle("POST /admin/polls/{id}", s.requireAdmin(s.adminUpdatePoll))
	mux.Handle("POST /admin/polls/{id}/delete", s.requireAdmin(s.adminDeletePoll))
	mux.Handle("POST /admin/polls/{id}/choices", s.requireAdmin(s.adminAddChoice))
	mux.Handle("POST /admin/polls/{id}/choices/{cid}", s.requireAdmin(s.adminUpdateChoice))
	mux.Handle("POST /admin/polls/{id}/choices/{cid}/delete", s.requireAdmin(s.adminDeleteChoice))

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusNotFound, "There is no page at this address.")
	})
}
