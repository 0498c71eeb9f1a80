package web

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"

	"github.com/polls-tenants/polls/app/internal/polls"
)

//go:embed templates/*.html
var templateFiles embed.FS

// pages are the templates, each page parsed once with the layout.
var pages = func() map[string]*template.Template {
	m := map[string]*template.Template{}
	for _, name := range []string{"index", "detail", "results", "login", "admin_index", "admin_poll", "error"} {
		m[name] = template.Must(template.ParseFS(templateFiles, "templates/base.html", "templates/"+name+".html"))
	}
	return m
}()

// page is the data every template gets; each page uses the fields it needs.
type page struct {
	Tenant string
	User   *polls.User
	Title  string
	Error  string

	Polls    []polls.Poll
	Poll     polls.Poll
	Username string
}

// render writes template name filled with p, with status.
func (s *server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Tenant = s.Tenant
	if p.User == nil {
		p.User = currentUser(r)
	}
	var buf bytes.Buffer
	if err := pages[name].ExecuteTemplate(&buf, "base", p); err != nil {
		s.Logger.Error("render template", "template", name, "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	buf.WriteTo(w)
}

// errorPage answers status with a page that explains msg.
func (s *server) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "error", page{Title: http.StatusText(status), Error: msg})
}

// serverError logs err and answers 500 without details, or 503 when the
// database could not be reached (Options.Unavailable): then the request
// never reached it, and the router passes a GET to another replica.
func (s *server) serverError(w http.ResponseWriter, r *http.Request, err error) {
	if s.Unavailable != nil && s.Unavailable(err) {
		s.outage.failed(err)
		s.Logger.Warn("database unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		s.unavailable(w, r)
		return
	}
	s.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	s.errorPage(w, r, http.StatusInternalServerError, "Something went wrong on our side.")
}

// unavailable answers 503 with Retry-After: the database cannot be
// reached, and another replica or a moment later may serve the request.
func (s *server) unavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "1")
	s.errorPage(w, r, http.StatusServiceUnavailable, "The site cannot reach its database right now. Try again in a moment.")
}
