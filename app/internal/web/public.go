package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/polls-tenants/polls/app/internal/polls"
)

// pathID returns the positive integer path value name, or false.
func pathID(r *http.Request, name string) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	return id, err == nil && id > 0
}

// loadPoll returns the poll named by the {id} path value; when it answered
// the request itself (404 or 500) it returns false.
func (s *server) loadPoll(w http.ResponseWriter, r *http.Request) (polls.Poll, bool) {
	id, ok := pathID(r, "id")
	if !ok {
		s.errorPage(w, r, http.StatusNotFound, "There is no such poll.")
		return polls.Poll{}, false
	}
	p, err := s.Store.Poll(r.Context(), id)
	if errors.Is(err, polls.ErrNotFound) {
		s.errorPage(w, r, http.StatusNotFound, "There is no such poll.")
		return p, false
	}
	if err != nil {
		s.serverError(w, r, err)
		return p, false
	}
	return p, true
}

func (s *server) index(w http.ResponseWriter, r *http.Request) {
	ps, err := s.Store.ListPolls(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "index", page{Title: "Polls", Polls: ps})
}

func (s *server) detail(w http.ResponseWriter, r *http.Request) {
	if p, ok := s.loadPoll(w, r); ok {
		s.render(w, r, http.StatusOK, "detail", page{Title: p.Question, Poll: p})
	}
}

func (s *server) results(w http.ResponseWriter, r *http.Request) {
	if p, ok := s.loadPoll(w, r); ok {
		s.render(w, r, http.StatusOK, "results", page{Title: p.Question, Poll: p})
	}
}

// vote counts one vote and redirects to the results, so reloading the
// results page does not vote again.
func (s *server) vote(w http.ResponseWriter, r *http.Request) {
	p, ok := s.loadPoll(w, r)
	if !ok {
		return
	}
	choiceID, err := strconv.ParseInt(r.PostFormValue("choice"), 10, 64)
	if err != nil {
		s.render(w, r, http.StatusBadRequest, "detail", page{Title: p.Question, Poll: p, Error: "You didn't select a choice."})
		return
	}
	err = s.Store.Vote(r.Context(), p.ID, choiceID)
	if errors.Is(err, polls.ErrNotFound) {
		s.render(w, r, http.StatusBadRequest, "detail", page{Title: p.Question, Poll: p, Error: "That choice is not part of this poll."})
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, "/polls/"+strconv.FormatInt(p.ID, 10)+"/results", http.StatusSeeOther)
}
