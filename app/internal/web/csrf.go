package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
)

// CSRF protection is a double-submit cookie: every form carries the value
// of the csrftoken cookie in its csrf_token field, and a state-changing
// request whose field and cookie differ is refused with 403. Another site
// can make a browser send the cookie but cannot read it to fill the field.
const (
	csrfCookie = "csrftoken"
	csrfField  = "csrf_token"
	csrfLen    = 43 // base64 of 32 random bytes
)

// maxFormBytes bounds the body of any form post.
const maxFormBytes = 64 << 10

type csrfKey struct{}

// csrfToken returns the token the forms of the page for r must carry.
func csrfToken(r *http.Request) string {
	tok, _ := r.Context().Value(csrfKey{}).(string)
	return tok
}

func (s *server) csrf(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var tok string
		if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == csrfLen {
			tok = c.Value
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		default:
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			sent := r.PostFormValue(csrfField)
			if tok == "" || subtle.ConstantTimeCompare([]byte(sent), []byte(tok)) != 1 {
				s.Logger.Warn("csrf check failed", "method", r.Method, "path", r.URL.Path, "cookie", tok != "")
				s.errorPage(w, r, http.StatusForbidden, "CSRF verification failed: reload the page and try again.")
				return
			}
		}
		if tok == "" {
			tok = newToken()
			http.SetCookie(w, &http.Cookie{
				Name: csrfCookie, Value: tok, Path: "/", MaxAge: 365 * 24 * 3600,
				HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: isHTTPS(r),
			})
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), csrfKey{}, tok)))
	})
}

// newToken returns 32 random bytes, base64url-encoded.
func newToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// isHTTPS reports whether the browser reached us over TLS, directly or
// through a proxy that says so.
func isHTTPS(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}
