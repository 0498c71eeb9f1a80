package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/polls-tenants/polls/app/internal/postgres"
	"github.com/polls-tenants/polls/app/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	tenant    = "Acme Corp"
	host      = "polls.acme.test"
	adminPass = "correct horse"
)

// site is a handler over a fresh, migrated database with an admin user.
type site struct {
	t       *testing.T
	h       http.Handler
	db      *postgres.DB
	cookies map[string]*http.Cookie
}

// newSite creates database dbname on the shared server and serves it.
func newSite(t *testing.T, dbname string) *site {
	t.Helper()
	s := newUnmigratedSite(t, dbname)
	ctx := context.Background()
	if _, err := s.db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.EnsureUser(ctx, "admin", adminPass); err != nil {
		t.Fatal(err)
	}
	return s
}

func newUnmigratedSite(t *testing.T, dbname string) *site {
	t.Helper()
	db, err := postgres.Open(context.Background(), pgtest.Shared(t).CreateDatabase(t, dbname))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	h := New(Options{Tenant: tenant, AllowedHosts: []string{host}, Store: db, Unavailable: postgres.Unavailable})
	return &site{t: t, h: h, db: db, cookies: map[string]*http.Cookie{}}
}

// do sends a request as a browser would, keeping cookies, and returns the
// response with its body read. header holds name, value pairs; "Host"
// replaces the request's Host (default host).
func (s *site) do(method, path string, form url.Values, header ...string) (*http.Response, string) {
	s.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req := httptest.NewRequest(method, path, body)
	req.Host = host
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	for _, c := range s.cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	res := rec.Result()
	for _, c := range res.Cookies() {
		if c.MaxAge < 0 {
			delete(s.cookies, c.Name)
		} else {
			s.cookies[c.Name] = c
		}
	}
	return res, rec.Body.String()
}

// get GETs path and fails unless the status is want.
func (s *site) get(path string, want int) string {
	s.t.Helper()
	res, body := s.do("GET", path, nil)
	if res.StatusCode != want {
		s.t.Fatalf("GET %s = %d; want %d\n%s", path, res.StatusCode, want, body)
	}
	return body
}

// post submits form to path as a current browser sends the site's own
// forms (Origin and Sec-Fetch-Site say same-origin), and fails unless the
// status is want. It returns the Location.
func (s *site) post(path string, form url.Values, want int) string {
	s.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	res, body := s.do("POST", path, form, "Origin", "http://"+host, "Sec-Fetch-Site", "same-origin")
	if res.StatusCode != want {
		s.t.Fatalf("POST %s = %d; want %d\n%s", path, res.StatusCode, want, body)
	}
	return res.Header.Get("Location")
}

// login logs in as the admin.
func (s *site) login() {
	s.t.Helper()
	if loc := s.post("/admin/login", url.Values{"username": {"admin"}, "password": {adminPass}}, http.StatusSeeOther); loc != "/admin/" {
		s.t.Fatalf("login redirected to %q; want /admin/", loc)
	}
}

var idRE = regexp.MustCompile(`\d+$`)

// createPoll creates a poll with choices through the admin pages and
// returns its admin path.
func (s *site) createPoll(question string, choices ...string) string {
	s.t.Helper()
	loc := s.post("/admin/polls", url.Values{"question": {question}}, http.StatusSeeOther)
	if !idRE.MatchString(loc) {
		s.t.Fatalf("create poll redirected to %q; want /admin/polls/ID", loc)
	}
	for _, c := range choices {
		s.post(loc+"/choices", url.Values{"text": {c}}, http.StatusSeeOther)
	}
	return loc
}
