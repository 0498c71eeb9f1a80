package web

import (
	"context"
	"errors"
	"net/http"

	"github.com/polls-tenants/polls/app/internal/polls"
)

// sessionCookie holds the admin's session token.
const sessionCookie = "sessionid"

type userKey struct{}

// currentUser returns the admin requireAdmin found for r.
func currentUser(r *http.Request) *polls.User {
	u, _ := r.Context().Value(userKey{}).(*polls.User)
	return u
}

// sessionUser looks up the user of r's session cookie; nil means none.
func (s *server) sessionUser(r *http.Request) (*polls.User, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, nil
	}
	u, err := s.Store.SessionUser(r.Context(), c.Value)
	if errors.Is(err, polls.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// requireAdmin lets logged-in admins through; it sends others to the login
// page, or refuses their posts with 403.
func (s *server) requireAdmin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.sessionUser(r)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		if u == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
				return
			}
			s.errorPage(w, r, http.StatusForbidden, "Log in as an administrator first.")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	})
}

func (s *server) setSessionCookie(w http.ResponseWriter, r *http.Request, token string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: token, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: isHTTPS(r),
	})
}

// isHTTPS reports whether the browser reached us over TLS, directly or
// through a proxy that says so.
func isHTTPS(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}
