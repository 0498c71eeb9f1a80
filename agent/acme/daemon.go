package acme

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config is what `polls-agent acme run` is started with.
type Config struct {
	Email     string
	Directory string
	// CARoot is a PEM file of roots that sign the ACME server's HTTPS
	// certificate, besides the system's ("" for none).
	CARoot string
	// DNSProvider is a lego DNS provider code; "" issues every host by
	// HTTP-01. Its credentials come from the environment.
	DNSProvider  string
	DNSResolvers []string
	// Domain is the stack's domain: with a DNS provider, its hosts share
	// *.<Domain>.
	Domain      string
	RenewBefore time.Duration
	// HostsFile is the router's list of hosts (conf.d/acme.hosts).
	HostsFile string
	// State and Live are the state directory (see Store) and the
	// directory shared with the router (see Live).
	State string
	Live  string
	// Proc is where nginx's workers are visible ("/proc").
	Proc string
	// SelfCheck is the router's plain HTTP as the companion reaches it
	// ("http://127.0.0.1:80" in the router's network namespace): before
	// an HTTP-01 order the router must serve a file of the webroot there
	// for the host (see selfCheck). "" orders without asking.
	SelfCheck string
	// Interval is how often the hosts file is read and certificates
	// checked; Concurrency how many orders may run at once, so one slow
	// host never holds up the others.
	Interval    time.Duration
	Concurrency int
}

// issueFunc orders the certificate w with key and returns its chain.
type issueFunc func(ctx context.Context, w Want, key crypto.Signer) ([]byte, error)

// daemon keeps the router's certificates: see Run.
type daemon struct {
	cfg   Config
	store Store
	live  Live
	now   func() time.Time
	// connect makes the ACME client, once, when the first order is due.
	connect func(ctx context.Context) (issueFunc, error)
	mu      sync.Mutex // guards issue, set by the first order
	issue   issueFunc
	// self asks the router for the self-check; it follows no redirect,
	// and a proxy of the environment is not the router.
	self *http.Client

	hosts    []Host
	certs    map[string]*Stored
	status   Status
	inflight map[string]bool
	done     chan result
	saved    []byte
}

type result struct {
	want  Want
	chain []byte
	err   error
}

// newDaemon returns a daemon whose orders go through lego.
func newDaemon(cfg Config) *daemon {
	d := &daemon{cfg: cfg, store: Store{Dir: cfg.State}, now: time.Now,
		certs: map[string]*Stored{}, inflight: map[string]bool{}, done: make(chan result),
		self: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	d.live = Live{Dir: cfg.Live, Owner: NginxWorkerOwner(cfg.Proc)}
	d.connect = func(ctx context.Context) (issueFunc, error) {
		is, err := newIssuer(ctx, cfg, d.store, d.live)
		if err != nil {
			return nil, err
		}
		return is.obtain, nil
	}
	return d
}

// Run keeps every host in the hosts file served with a valid certificate
// until ctx ends: it reads the file every Interval (so hosts come and go
// with the router's config, without a restart), orders what is missing or
// due, publishes certificates to the live directory, and records each
// host's state in status.json. A failed order backs off (see Backoff) for
// its certificate only; every other host goes on.
func (d *daemon) Run(ctx context.Context) error {
	st, err := d.store.LoadStatus()
	if err != nil {
		slog.Warn("status.json unreadable; starting with no records", "err", err)
	}
	d.status = st
	d.status.Directory = d.cfg.Directory
	d.live.cleanWebroot(d.now())
	for {
		d.step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case r := <-d.done:
			d.finish(r)
		case <-time.After(d.cfg.Interval):
		}
	}
}

// step reads the hosts, starts the orders that are due and publishes.
func (d *daemon) step(ctx context.Context) {
	if hosts, err := d.readHosts(); err != nil {
		slog.Error("hosts file", "file", d.cfg.HostsFile, "err", err)
	} else {
		d.hosts = hosts
	}
	now := d.now()
	wants := Wanted(d.hosts, d.cfg.Domain, d.cfg.DNSProvider != "")
	for _, w := range wants {
		have := d.cert(w.Name)
		if d.inflight[w.Name] || len(d.inflight) >= d.cfg.Concurrency {
			continue
		}
		var meta *Meta
		if have != nil {
			meta = &have.Meta
		}
		force := d.store.TakeRequest(w.Name)
		due, reason := Due(w, meta, d.status.Records[w.Name], d.cfg.Directory, d.cfg.RenewBefore, now, force)
		if !due {
			continue
		}
		slog.Info("ordering certificate", "certificate", w.Name, "challenge", w.Challenge, "why", reason)
		d.inflight[w.Name] = true
		go func(w Want) {
			chain, err := d.order(ctx, w)
			select {
			case d.done <- result{want: w, chain: chain, err: err}:
			case <-ctx.Done():
			}
		}(w)
	}
	d.publish(wants, now)
}

// order runs one order, connecting to the CA the first time; an HTTP-01
// order only once the router passes the self-check.
func (d *daemon) order(ctx context.Context, w Want) ([]byte, error) {
	if w.Challenge == HTTP01 && d.cfg.SelfCheck != "" {
		if err := selfCheck(ctx, d.self, d.cfg.SelfCheck, d.live, w.Hosts); err != nil {
			return nil, err
		}
		slog.Info("self-check passed", "certificate", w.Name)
	}
	key, err := d.store.Key(w.Name)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	d.mu.Lock()
	if d.issue == nil {
		// Connecting is retried with the order that needs it; a CA that
		// cannot be reached fails (and backs off) each certificate alone.
		issue, err := d.connect(ctx)
		if err != nil {
			d.mu.Unlock()
			return nil, err
		}
		d.issue = issue
	}
	issue := d.issue
	d.mu.Unlock()
	octx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return issue(octx, w, key)
}

// finish records an order's outcome.
func (d *daemon) finish(r result) {
	delete(d.inflight, r.want.Name)
	now := d.now()
	if r.err == nil {
		meta, err := d.store.SaveCert(r.want.Name, d.cfg.Directory, r.chain, now)
		if err == nil {
			delete(d.status.Records, r.want.Name)
			d.certs[r.want.Name] = nil
			slog.Info("certificate issued", "certificate", r.want.Name, "serial", meta.Serial, "notAfter", meta.NotAfter)
			return
		}
		r.err = fmt.Errorf("store the certificate: %w", err)
	}
	msg, limited := describe(r.err)
	if isSelfCheck(r.err) {
		rec := d.status.Records[r.want.Name].SelfCheckFailed(now, msg)
		d.status.Records[r.want.Name] = rec
		slog.Warn("self-check failed, the CA was not asked", "certificate", r.want.Name, "selfChecks", rec.SelfChecks, "nextAttempt", rec.NextAttempt, "err", msg)
		return
	}
	rec := d.status.Records[r.want.Name].Failed(now, msg, limited)
	d.status.Records[r.want.Name] = rec
	slog.Error("order failed", "certificate", r.want.Name, "attempts", rec.Attempts, "nextAttempt", rec.NextAttempt, "err", msg)
}

// cert returns the stored certificate name, from the cache or the store.
func (d *daemon) cert(name string) *Stored {
	if st, ok := d.certs[name]; ok && st != nil {
		return st
	}
	st, err := d.store.Cert(name)
	if err != nil {
		slog.Error("stored certificate unreadable", "certificate", name, "err", err)
		return nil
	}
	if st != nil {
		d.certs[name] = st
	}
	return st
}

func (d *daemon) readHosts() ([]Host, error) {
	f, err := os.Open(d.cfg.HostsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseHosts(f)
}

// publish serves each host its unexpired certificate and writes the
// status.
func (d *daemon) publish(wants []Want, now time.Time) {
	served := map[string]*Stored{}
	var hosts []HostStatus
	for _, w := range wants {
		st := d.cert(w.Name)
		rec := d.status.Records[w.Name]
		for _, h := range w.Hosts {
			hs := HostStatus{Host: h.Name, Tenant: h.Tenant, Certificate: w.Name, Challenge: w.Challenge, State: "pending",
				Error: rec.LastError, FailingSince: rec.FailingSince, Attempts: rec.Attempts, NextAttempt: rec.NextAttempt}
			use := st
			if use == nil || !now.Before(use.Meta.NotAfter) {
				// Until its wanted certificate exists (the wildcard just
				// configured, or the host's own after the wildcard was
				// turned off), a host keeps one it has that is still valid.
				use = d.fallback(h.Name, w.Name, now)
			}
			if use != nil {
				served[h.Name] = use
				hs.State, hs.Serial, hs.NotAfter, hs.RenewAt = "valid", use.Meta.Serial, use.Meta.NotAfter, use.Meta.RenewAt(d.cfg.RenewBefore)
			} else if rec.Attempts > 0 || rec.SelfChecks > 0 {
				hs.State = "failed"
			}
			hosts = append(hosts, hs)
		}
	}
	if err := d.live.Publish(served); err != nil {
		slog.Error("publish certificates to the router", "err", err)
	}
	d.status.Hosts = hosts
	raw, _ := json.Marshal(struct {
		Hosts   []HostStatus
		Records map[string]Record
	}{hosts, d.status.Records})
	if bytes.Equal(raw, d.saved) {
		return
	}
	d.status.Updated = now
	if err := d.store.SaveStatus(d.status); err != nil {
		slog.Error("write status.json", "err", err)
		return
	}
	d.saved = raw
}

// fallback returns a stored, unexpired certificate for host other than
// wanted: its own, or the wildcard of its parent domain.
func (d *daemon) fallback(host, wanted string, now time.Time) *Stored {
	candidates := []string{host}
	if _, parent, ok := strings.Cut(host, "."); ok {
		candidates = append(candidates, "*."+parent)
	}
	for _, name := range candidates {
		if name == wanted {
			continue
		}
		if st := d.cert(name); st != nil && now.Before(st.Meta.NotAfter) && slices.Contains(st.Meta.Domains, name) {
			return st
		}
	}
	return nil
}
