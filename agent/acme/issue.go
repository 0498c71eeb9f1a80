package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/providers/http/webroot"
	"github.com/go-acme/lego/v5/registration"
)

// user is the ACME account as lego sees it.
type user struct {
	email string
	reg   *legoacme.ExtendedAccount
	key   crypto.Signer
}

func (u *user) GetEmail() string                           { return u.email }
func (u *user) GetRegistration() *legoacme.ExtendedAccount { return u.reg }
func (u *user) GetPrivateKey() crypto.Signer               { return u.key }

// issuer orders certificates from one ACME directory with lego: one
// client solves HTTP-01 through the shared webroot, one (with a DNS
// provider) DNS-01 for the wildcard. Both use the same account.
type issuer struct {
	http, dns *lego.Client
	dnsErr    error
}

// newIssuer loads the directory's account from the store, or registers
// one (agreeing to the CA's terms, which configuring ACME means) and
// stores it, so a restart never registers again.
func newIssuer(ctx context.Context, cfg Config, store Store, live Live) (*issuer, error) {
	client, err := httpClient(cfg.CARoot)
	if err != nil {
		return nil, err
	}
	acct, err := store.loadAccount(cfg.Directory)
	if err != nil {
		return nil, fmt.Errorf("account: %w", err)
	}
	u := &user{email: cfg.Email}
	if acct != nil {
		b, _ := pem.Decode([]byte(acct.KeyPEM))
		if b == nil {
			return nil, errors.New("account: stored key is not PEM")
		}
		k, err := x509.ParseECPrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("account: stored key: %w", err)
		}
		u.key = k
		u.reg = &legoacme.ExtendedAccount{Location: acct.URI}
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		u.key = k
	}
	config := lego.NewConfig(u)
	config.CADirURL = cfg.Directory
	config.HTTPClient = client
	config.UserAgent = "polls-agent-acme"
	newClient := func() (*lego.Client, error) { return lego.NewClient(config) }
	c, err := newClient()
	if err != nil {
		return nil, fmt.Errorf("ACME directory %s: %w", cfg.Directory, err)
	}
	if u.reg == nil {
		reg, err := c.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
		if err != nil {
			return nil, fmt.Errorf("register the ACME account: %w", err)
		}
		u.reg = reg
		der, _ := x509.MarshalECPrivateKey(u.key.(*ecdsa.PrivateKey))
		if err := store.saveAccount(account{Email: cfg.Email, URI: reg.Location, Directory: cfg.Directory,
			KeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))}); err != nil {
			return nil, fmt.Errorf("store the ACME account: %w", err)
		}
		// The clients must carry the account's URL (its "kid").
		if c, err = newClient(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(live.Webroot(), 0o755); err != nil {
		return nil, err
	}
	wr, err := webroot.NewHTTPProvider(live.Webroot())
	if err != nil {
		return nil, err
	}
	if err := c.Challenge.SetHTTP01Provider(wr); err != nil {
		return nil, err
	}
	is := &issuer{http: c}
	if cfg.DNSProvider != "" {
		is.dns, is.dnsErr = newDNSClient(newClient, cfg)
	}
	return is, nil
}

// newDNSClient returns a client solving DNS-01 with the configured lego
// provider, whose credentials it reads from the environment (each
// VAR_FILE names a file holding VAR).
func newDNSClient(newClient func() (*lego.Client, error), cfg Config) (*lego.Client, error) {
	build, ok := dnsProviders[cfg.DNSProvider]
	if !ok {
		return nil, fmt.Errorf("DNS provider %q is not built in (see `polls-agent acme providers`)", cfg.DNSProvider)
	}
	p, err := build()
	if err != nil {
		return nil, fmt.Errorf("DNS provider %s: %w", cfg.DNSProvider, err)
	}
	c, err := newClient()
	if err != nil {
		return nil, err
	}
	var opts []dns01.ChallengeOption
	if len(cfg.DNSResolvers) > 0 {
		// Asked through the given servers only: the zone's authoritative
		// servers may be unreachable from here (split horizon, a test DNS).
		dns01.SetDefaultClient(dns01.NewClient(&dns01.Options{RecursiveNameservers: cfg.DNSResolvers}))
		opts = append(opts, dns01.DisableAuthoritativeNssPropagationRequirement())
	}
	if err := c.Challenge.SetDNS01Provider(p, opts...); err != nil {
		return nil, err
	}
	return c, nil
}

var _ challenge.Provider = (*webroot.HTTPProvider)(nil)

// obtain orders a certificate for w with its stored key and returns the
// chain, leaf first.
func (is *issuer) obtain(ctx context.Context, w Want, key crypto.Signer) ([]byte, error) {
	c := is.http
	if w.Challenge == DNS01 {
		if is.dnsErr != nil {
			return nil, is.dnsErr
		}
		c = is.dns
	}
	res, err := c.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{w.Name}, PrivateKey: key, Bundle: true})
	if err != nil {
		return nil, err
	}
	return res.Certificate, nil
}

// httpClient is lego's HTTP client, trusting the system's roots plus the
// PEM file caRoot, if any.
func httpClient(caRoot string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if caRoot != "" {
		pemText, err := os.ReadFile(caRoot)
		if err != nil {
			return nil, fmt.Errorf("CA root: %w", err)
		}
		if !pool.AppendCertsFromPEM(pemText) {
			return nil, fmt.Errorf("CA root %s holds no PEM certificate", caRoot)
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	transport.TLSHandshakeTimeout = 30 * time.Second
	transport.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Timeout: 2 * time.Minute, Transport: transport}, nil
}

// describe turns an order's error into one line for the status: the CA's
// problem (type and detail) where there is one.
func describe(err error) (msg string, rateLimited bool) {
	var problem *legoacme.ProblemDetails
	if errors.As(err, &problem) {
		rateLimited = strings.HasSuffix(problem.Type, ":rateLimited")
	}
	msg = strings.Join(strings.Fields(err.Error()), " ")
	if len(msg) > 600 {
		msg = msg[:600] + "…"
	}
	return msg, rateLimited || strings.Contains(msg, "urn:ietf:params:acme:error:rateLimited")
}

// Providers returns the DNS provider codes this build includes, sorted.
func Providers() []string {
	codes := make([]string, 0, len(dnsProviders))
	for c := range dnsProviders {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	return codes
}
