package web

import (
	"errors"
	"net/http"
)

// Cross-site request forgery is refused by net/http's CrossOriginProtection:
// browsers say where a request comes from (Sec-Fetch-Site, or on older
// browsers only Origin), and a state-changing request sent by another
// site's page gets 403 before any handler runs. Requests that carry neither
// header come from no browser (curl, scripts) and go through: a forgery
// needs the victim's browser, which sends them. Origin is compared with the
// Host header, port included: behind a proxy on a non-default port, the
// proxy must forward the Host the browser sent (nginx's $http_host).

// maxFormBytes bounds the body of any form post.
const maxFormBytes = 64 << 10

// csrf refuses cross-origin state-changing requests with the site's 403
// page, and reads the form of the others, bounded by maxFormBytes.
func (s *server) csrf(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Logger.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "host", r.Host)
		s.errorPage(w, r, http.StatusForbidden, "Cross-site request refused: send this form from the site's own page.")
	}))
	return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			// Parsed here, so an oversized form is refused as such rather
			// than seen by a handler as a form with missing fields.
			if err := r.ParseForm(); err != nil {
				if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
					s.errorPage(w, r, http.StatusRequestEntityTooLarge, "The form is too large.")
					return
				}
				s.errorPage(w, r, http.StatusBadRequest, "The form could not be read.")
				return
			}
		}
		next.ServeHTTP(w, r)
	}))
}
