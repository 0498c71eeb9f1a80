package web

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/polls-tenants/polls/app/internal/postgres"
	"github.com/polls-tenants/polls/app/pgtest"
)

func TestHostEnforced(t *testing.T) {
	// Ensures requests for hosts outside ALLOWED_HOSTS get 400 while the
	// allowed host, with or without a port, and the probes are served.
	s := newSite(t, "web_host")
	for _, h := range []string{"evil.test", "polls.acme.test.evil.test", ""} {
		req, _ := http.NewRequest("GET", "/", nil)
		req.Host = h
		res := serve(s.h, req)
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("Host %q: status %d; want 400", h, res.StatusCode)
		}
	}
	for _, tt := range []struct{ host, path string }{
		{"POLLS.acme.test:8000", "/"},
		{"127.0.0.1:8000", "/healthz"},
		{"anything", "/readyz"},
	} {
		req, _ := http.NewRequest("GET", tt.path, nil)
		req.Host = tt.host
		if res := serve(s.h, req); res.StatusCode != http.StatusOK {
			t.Errorf("GET %s with Host %q: status %d; want 200", tt.path, tt.host, res.StatusCode)
		}
	}
}

func TestCrossOriginPostsRefused(t *testing.T) {
	// Ensures every form post another site's page makes a browser send is
	// refused with 403 and changes nothing, whether the browser says so with
	// Sec-Fetch-Site or, being older, only with Origin; same-site (another
	// tenant's subdomain) counts as another site.
	s := newSite(t, "web_cross_origin")
	s.login()
	poll := s.createPoll("Q?", "A")
	paths := []string{"/admin/login", "/admin/logout", "/admin/polls", poll, poll + "/delete", poll + "/choices",
		strings.Replace(poll, "/admin", "", 1) + "/vote"}
	forged := map[string][]string{
		"Sec-Fetch-Site cross-site":  {"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.test"},
		"Sec-Fetch-Site same-site":   {"Sec-Fetch-Site", "same-site", "Origin", "http://other.acme.test"},
		"Origin of another site":     {"Origin", "http://evil.test"},
		"Origin null":                {"Origin", "null"},
		"Origin on another port":     {"Origin", "http://" + host + ":8080"},
		"Origin without Host's port": {"Origin", "http://" + host, "Host", host + ":8080"},
	}
	for _, p := range paths {
		for name, header := range forged {
			res, body := s.do("POST", p, url.Values{"question": {"Hijacked?"}, "text": {"x"}, "choice": {"1"}}, header...)
			if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "Cross-site request refused") {
				t.Errorf("POST %s with %s: status %d; want 403 Cross-site request refused", p, name, res.StatusCode)
			}
		}
	}
	if body := s.get(poll, http.StatusOK); strings.Contains(body, "Hijacked") || !strings.Contains(body, `value="A"`) {
		t.Errorf("a refused post changed the poll:\n%s", body)
	}
	if body := s.get("/", http.StatusOK); strings.Contains(body, "Hijacked") {
		t.Error("a refused post created a poll")
	}
}

func TestSameOriginPostsServed(t *testing.T) {
	// Ensures form posts from the site's own pages are served: a current
	// browser's (Sec-Fetch-Site), an older browser's (Origin equal to Host,
	// on a non-default port too, as behind the router on 8080), and a
	// client that is no browser (neither header).
	s := newSite(t, "web_same_origin")
	s.login()
	for name, header := range map[string][]string{
		"Sec-Fetch-Site same-origin":   {"Sec-Fetch-Site", "same-origin"},
		"Origin equal to Host":         {"Origin", "http://" + host},
		"Origin equal to Host on 8080": {"Origin", "http://" + host + ":8080", "Host", host + ":8080"},
		"neither header":               nil,
	} {
		res, body := s.do("POST", "/admin/polls", url.Values{"question": {name + "?"}}, header...)
		if res.StatusCode != http.StatusSeeOther {
			t.Errorf("POST /admin/polls with %s: status %d; want 303\n%s", name, res.StatusCode, body)
		}
		if body := s.get("/", http.StatusOK); !strings.Contains(body, name+"?") {
			t.Errorf("POST /admin/polls with %s did not create its poll", name)
		}
	}
}

func TestFormBodyBounded(t *testing.T) {
	// Ensures a form body over 64 KiB is refused with 413 and changes
	// nothing, while one just under the bound is served.
	s := newSite(t, "web_form_bound")
	s.login()
	under := url.Values{"question": {"Small?"}, "pad": {strings.Repeat("x", maxFormBytes-100)}}
	s.post("/admin/polls", under, http.StatusSeeOther)
	over := url.Values{"question": {"Big?"}, "pad": {strings.Repeat("x", maxFormBytes)}}
	res, body := s.do("POST", "/admin/polls", over, "Sec-Fetch-Site", "same-origin")
	if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, tenant) {
		t.Errorf("POST of %d bytes: status %d; want 413 with the site's page", len(over.Encode()), res.StatusCode)
	}
	if body := s.get("/", http.StatusOK); !strings.Contains(body, "Small?") || strings.Contains(body, "Big?") {
		t.Errorf("poll list after the posts; want Small? and not Big?:\n%s", body)
	}
}

func TestAdminNeedsLogin(t *testing.T) {
	// Ensures anonymous visitors are sent to the login page and their admin
	// posts are refused.
	s := newSite(t, "web_auth")
	for _, p := range []string{"/admin/", "/admin/polls/1"} {
		res, _ := s.do("GET", p, nil)
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/admin/login" {
			t.Errorf("GET %s: %d to %q; want 303 to /admin/login", p, res.StatusCode, res.Header.Get("Location"))
		}
	}
	s.post("/admin/polls", url.Values{"question": {"Sneaky?"}}, http.StatusForbidden)
	s.post("/admin/polls/1/delete", nil, http.StatusForbidden)
	res, _ := s.do("GET", "/admin/", nil, "Cookie", sessionCookie+"=forged")
	if res.StatusCode != http.StatusSeeOther {
		t.Errorf("GET /admin/ with a forged session: %d; want 303", res.StatusCode)
	}
}

func TestLogin(t *testing.T) {
	// Ensures a wrong password is refused, the right one starts a session
	// with a safe cookie, and logging out ends it.
	s := newSite(t, "web_login")
	body := s.get("/admin/login", http.StatusOK)
	if !strings.Contains(body, `action="/admin/login"`) {
		t.Error("login page has no form posting to /admin/login")
	}
	s.post("/admin/login", url.Values{"username": {"admin"}, "password": {"wrong"}}, http.StatusUnauthorized)
	s.post("/admin/login", url.Values{"username": {"root"}, "password": {adminPass}}, http.StatusUnauthorized)
	if _, ok := s.cookies[sessionCookie]; ok {
		t.Fatal("failed login set a session cookie")
	}
	s.login()
	c := s.cookies[sessionCookie]
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure {
		t.Errorf("session cookie = %+v; want HttpOnly, SameSite=Lax, Path=/, not Secure over http", c)
	}
	if body := s.get("/admin/", http.StatusOK); !strings.Contains(body, "Log out") {
		t.Error("admin page does not offer to log out")
	}
	s.get("/admin/login", http.StatusSeeOther)
	token := c.Value
	s.post("/admin/logout", nil, http.StatusSeeOther)
	res, _ := s.do("GET", "/admin/", nil, "Cookie", sessionCookie+"="+token)
	if res.StatusCode != http.StatusSeeOther {
		t.Errorf("GET /admin/ with a logged-out session: %d; want 303", res.StatusCode)
	}
}

func TestCookiesSecureBehindHTTPS(t *testing.T) {
	// Ensures cookies are Secure when the proxy says the request came over HTTPS.
	s := newSite(t, "web_secure")
	form := url.Values{"username": {"admin"}, "password": {adminPass}}
	login, _ := s.do("POST", "/admin/login", form, "X-Forwarded-Proto", "https", "Origin", "https://"+host)
	for _, c := range login.Cookies() {
		if !c.Secure || !c.HttpOnly {
			t.Errorf("cookie %s: Secure=%v HttpOnly=%v; want both", c.Name, c.Secure, c.HttpOnly)
		}
	}
	if len(login.Cookies()) == 0 {
		t.Errorf("login over https set no cookie (status %d)", login.StatusCode)
	}
}

func TestNotFound(t *testing.T) {
	// Ensures unknown paths, polls and choices answer 404 with the site's page.
	s := newSite(t, "web_404")
	for _, p := range []string{"/nope", "/polls/999999", "/polls/abc", "/polls/0/results", "/polls/999999/results", "/static/x.css"} {
		body := s.get(p, http.StatusNotFound)
		if !strings.Contains(body, tenant) {
			t.Errorf("404 page for %s lacks the tenant name", p)
		}
	}
	s.post("/polls/999999/vote", url.Values{"choice": {"1"}}, http.StatusNotFound)
	s.login()
	s.get("/admin/polls/999999", http.StatusNotFound)
	poll := s.createPoll("Q?", "A")
	s.post(poll+"/choices/999999/delete", nil, http.StatusNotFound)
	s.post(poll+"/choices/999999", url.Values{"text": {"B"}}, http.StatusNotFound)
}

func TestVoteFlow(t *testing.T) {
	// Ensures a visitor votes through the form, is redirected to the results
	// (POST-redirect-GET), and bad choices are refused with 400.
	s := newSite(t, "web_vote")
	s.login()
	admin := s.createPoll("Best pet?", "Cat", "Dog")
	public := strings.Replace(admin, "/admin", "", 1)
	body := s.get(public, http.StatusOK)
	m := regexp.MustCompile(`name="choice" value="(\d+)"> Dog`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("poll page has no Dog choice:\n%s", body)
	}
	for range 3 {
		if loc := s.post(public+"/vote", url.Values{"choice": {m[1]}}, http.StatusSeeOther); loc != public+"/results" {
			t.Fatalf("vote redirected to %q; want %s/results", loc, public)
		}
	}
	if body := s.get(public+"/results", http.StatusOK); !strings.Contains(body, "Dog — 3 votes (100%)") || !strings.Contains(body, "Cat — 0 votes") {
		t.Errorf("results page does not show Dog 3, Cat 0:\n%s", body)
	}
	if body := s.get(public, http.StatusOK); !strings.Contains(body, "Best pet?") {
		t.Error("poll page lacks the question")
	}
	s.post(public+"/vote", nil, http.StatusBadRequest)
	s.post(public+"/vote", url.Values{"choice": {"999999"}}, http.StatusBadRequest)
}

func TestAdminEdits(t *testing.T) {
	// Ensures the admin can rename a poll and a choice, delete a choice,
	// reject empty text, and delete the poll.
	s := newSite(t, "web_admin")
	s.login()
	poll := s.createPoll("Old question?", "One", "Two")
	body := s.get(poll, http.StatusOK)
	ids := regexp.MustCompile(`action="`+poll+`/choices/(\d+)"`).FindAllStringSubmatch(body, -1)
	if len(ids) != 2 {
		t.Fatalf("edit page shows %d choice forms; want 2", len(ids))
	}
	s.post(poll, url.Values{"question": {"New question?"}}, http.StatusSeeOther)
	s.post(poll+"/choices/"+ids[0][1], url.Values{"text": {"Uno"}}, http.StatusSeeOther)
	s.post(poll+"/choices/"+ids[1][1]+"/delete", nil, http.StatusSeeOther)
	s.post(poll, url.Values{"question": {"   "}}, http.StatusBadRequest)
	s.post("/admin/polls", url.Values{"question": {""}}, http.StatusBadRequest)
	body = s.get(poll, http.StatusOK)
	if !strings.Contains(body, "New question?") || !strings.Contains(body, `value="Uno"`) || strings.Contains(body, `value="Two"`) {
		t.Errorf("edit page after changes:\n%s", body)
	}
	s.post(poll+"/delete", nil, http.StatusSeeOther)
	s.get(poll, http.StatusNotFound)
	if body := s.get("/", http.StatusOK); !strings.Contains(body, "No polls are available.") {
		t.Error("deleted poll still listed")
	}
}

func TestEveryPageShowsTenant(t *testing.T) {
	// Ensures the tenant's name is on every page the site renders.
	s := newSite(t, "web_tenant")
	pages := map[string]string{}
	check := func(name, body string) { pages[name] = body }
	check("login", s.get("/admin/login", http.StatusOK))
	s.login()
	poll := s.createPoll("Q?", "A")
	public := strings.Replace(poll, "/admin", "", 1)
	check("index", s.get("/", http.StatusOK))
	check("detail", s.get(public, http.StatusOK))
	check("results", s.get(public+"/results", http.StatusOK))
	check("admin index", s.get("/admin/", http.StatusOK))
	check("admin poll", s.get(poll, http.StatusOK))
	check("not found", s.get("/missing", http.StatusNotFound))
	_, forbidden := s.do("POST", "/admin/polls", url.Values{})
	check("forbidden", forbidden)
	_, crossOrigin := s.do("POST", "/admin/polls", url.Values{}, "Sec-Fetch-Site", "cross-site")
	check("cross-origin", crossOrigin)
	for name, body := range pages {
		if !strings.Contains(body, "<title>") || !strings.Contains(body, `class="tenant" href="/">`+tenant+"</a>") {
			t.Errorf("%s page does not show tenant %q", name, tenant)
		}
	}
}

func TestReadyz(t *testing.T) {
	// Ensures /readyz is 503 until the schema is migrated and 200 after,
	// while /healthz is 200 throughout.
	s := newUnmigratedSite(t, "web_ready")
	s.get("/healthz", http.StatusOK)
	s.get("/readyz", http.StatusServiceUnavailable)
	if _, err := s.db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.get("/readyz", http.StatusOK)
	s.db.Close()
	s.get("/readyz", http.StatusServiceUnavailable)
}

func TestDatabaseUnavailable(t *testing.T) {
	// Ensures a page whose database cannot be reached is 503 with
	// Retry-After (the router passes a GET to another replica), and one
	// whose database refuses the app's password is 500.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	good := pgtest.Shared(t).CreateDatabase(t, "web_unavailable")
	for _, tc := range []struct {
		url   string
		want  int
		retry string
	}{
		{"postgres://app:pw@" + closed + "/app?sslmode=disable", http.StatusServiceUnavailable, "1"},
		{strings.Replace(good, "@", "x@", 1), http.StatusInternalServerError, ""},
	} {
		db, err := postgres.Open(context.Background(), tc.url)
		if err != nil {
			t.Fatal(err)
		}
		s := &site{t: t, h: New(Options{Tenant: tenant, AllowedHosts: []string{host}, Store: db, Unavailable: postgres.Unavailable}), db: db, cookies: map[string]*http.Cookie{}}
		res, _ := s.do(http.MethodGet, "/", nil)
		db.Close()
		if res.StatusCode != tc.want || res.Header.Get("Retry-After") != tc.retry {
			t.Errorf("GET / with database %s: %d, Retry-After %q; want %d, %q", postgres.Describe(tc.url), res.StatusCode, res.Header.Get("Retry-After"), tc.want, tc.retry)
		}
	}
}

func serve(h http.Handler, req *http.Request) *http.Response {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}
