package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/polls-tenants/polls/app/internal/polls"
)

func (s *server) loginForm(w http.ResponseWriter, r *http.Request) {
	u, err := s.sessionUser(r)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if u != nil {
		http.Redirect(w, r, "/admin/", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "login", page{Title: "Log in"})
}

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	username := r.PostFormValue("username")
	u, err := s.Store.Authenticate(r.Context(), username, r.PostFormValue("password"))
	if errors.Is(err, polls.ErrBadLogin) {
		s.Logger.Warn("failed login", "username", username, "remote", r.RemoteAddr)
		s.render(w, r, http.StatusUnauthorized, "login", page{Title: "Log in", Username: username, Error: "Wrong username or password."})
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	token, err := s.Store.CreateSession(r.Context(), u.ID, sessionTTL)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.Logger.Info("login", "username", u.Username)
	s.setSessionCookie(w, r, token, int(sessionTTL.Seconds()))
	http.Redirect(w, r, "/admin/", http.StatusSeeOther)
}

func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if err := s.Store.DeleteSession(r.Context(), c.Value); err != nil {
			s.serverError(w, r, err)
			return
		}
	}
	s.setSessionCookie(w, r, "", -1)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *server) adminIndex(w http.ResponseWriter, r *http.Request) {
	s.renderAdminIndex(w, r, http.StatusOK, "")
}

func (s *server) renderAdminIndex(w http.ResponseWriter, r *http.Request, status int, msg string) {
	ps, err := s.Store.ListPolls(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.render(w, r, status, "admin_index", page{Title: "Admin", Polls: ps, Error: msg})
}

func (s *server) adminCreatePoll(w http.ResponseWriter, r *http.Request) {
	q, err := polls.ValidateText("question", r.PostFormValue("question"))
	if err != nil {
		s.renderAdminIndex(w, r, http.StatusBadRequest, capitalize(err.Error()))
		return
	}
	id, err := s.Store.CreatePoll(r.Context(), q)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	redirectToPoll(w, r, id)
}

func (s *server) adminEditPoll(w http.ResponseWriter, r *http.Request) {
	if p, ok := s.loadPoll(w, r); ok {
		s.render(w, r, http.StatusOK, "admin_poll", page{Title: "Edit poll", Poll: p})
	}
}

// adminResult finishes an edit of poll p: a redirect back to its page on
// success, the page with the error for bad input, 404 or 500 otherwise.
func (s *server) adminResult(w http.ResponseWriter, r *http.Request, p polls.Poll, err error) {
	var invalid invalidInput
	switch {
	case err == nil:
		redirectToPoll(w, r, p.ID)
	case errors.As(err, &invalid):
		s.render(w, r, http.StatusBadRequest, "admin_poll", page{Title: "Edit poll", Poll: p, Error: capitalize(invalid.Error())})
	case errors.Is(err, polls.ErrNotFound):
		s.errorPage(w, r, http.StatusNotFound, "There is no such poll or choice.")
	default:
		s.serverError(w, r, err)
	}
}

func (s *server) adminUpdatePoll(w http.ResponseWriter, r *http.Request) {
	p, ok := s.loadPoll(w, r)
	if !ok {
		return
	}
	q, err := validate("question", r.PostFormValue("question"))
	if err == nil {
		err = s.Store.UpdatePoll(r.Context(), p.ID, q)
	}
	s.adminResult(w, r, p, err)
}

func (s *server) adminDeletePoll(w http.ResponseWriter, r *http.Request) {
	p, ok := s.loadPoll(w, r)
	if !ok {
		return
	}
	if err := s.Store.DeletePoll(r.Context(), p.ID); err != nil {
		s.adminResult(w, r, p, err)
		return
	}
	http.Redirect(w, r, "/admin/", http.StatusSeeOther)
}

func (s *server) adminAddChoice(w http.ResponseWriter, r *http.Request) {
	p, ok := s.loadPoll(w, r)
	if !ok {
		return
	}
	text, err := validate("choice", r.PostFormValue("text"))
	if err == nil {
		_, err = s.Store.AddChoice(r.Context(), p.ID, text)
	}
	s.adminResult(w, r, p, err)
}

// loadChoice returns the poll and the choice ID named by the {id} and {cid}
// path values; when it answered the request itself it returns false.
func (s *server) loadChoice(w http.ResponseWriter, r *http.Request) (polls.Poll, int64, bool) {
	p, ok := s.loadPoll(w, r)
	if !ok {
		return p, 0, false
	}
	cid, ok := pathID(r, "cid")
	if !ok {
		s.errorPage(w, r, http.StatusNotFound, "There is no such choice.")
		return p, 0, false
	}
	return p, cid, true
}

func (s *server) adminUpdateChoice(w http.ResponseWriter, r *http.Request) {
	p, cid, ok := s.loadChoice(w, r)
	if !ok {
		return
	}
	text, err := validate("choice", r.PostFormValue("text"))
	if err == nil {
		err = s.Store.UpdateChoice(r.Context(), p.ID, cid, text)
	}
	s.adminResult(w, r, p, err)
}

func (s *server) adminDeleteChoice(w http.ResponseWriter, r *http.Request) {
	p, cid, ok := s.loadChoice(w, r)
	if !ok {
		return
	}
	s.adminResult(w, r, p, s.Store.DeleteChoice(r.Context(), p.ID, cid))
}

// invalidInput is a validation error to show the admin with 400.
type invalidInput struct{ error }

// validate is polls.ValidateText with its error marked as bad input.
func validate(field, s string) (string, error) {
	v, err := polls.ValidateText(field, s)
	if err != nil {
		return "", invalidInput{err}
	}
	return v, nil
}

func redirectToPoll(w http.ResponseWriter, r *http.Request, id int64) {
	http.Redirect(w, r, "/admin/polls/"+strconv.FormatInt(id, 10), http.StatusSeeOther)
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
