package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Store is the companion's state directory, on a volume kept across
// router replacement and destroy:
//
//	accounts/<directory hash>/account.json   the ACME account and its key
//	certs/<name>/key.pem                     a certificate's private key, kept
//	                                         across renewals
//	certs/<name>/fullchain.pem, meta.json    the certificate and what it is
//	status.json                              per certificate: failures and
//	                                         backoff; per host: what it serves
//	requests/<name>                          renewals asked for by `acme renew`
//
// <name> is the certificate's domain, "_wildcard.<domain>" for *.<domain>.
type Store struct{ Dir string }

func fileName(name string) string {
	if d, ok := strings.CutPrefix(name, "*."); ok {
		return "_wildcard." + d
	}
	return name
}

func (s Store) certDir(name string) string { return filepath.Join(s.Dir, "certs", fileName(name)) }

// Stored is a certificate in the store.
type Stored struct {
	Meta      Meta
	FullChain []byte
	KeyPEM    []byte
}

// Cert returns the stored certificate name, or nil when there is none.
func (s Store) Cert(name string) (*Stored, error) {
	dir := s.certDir(name)
	raw, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st Stored
	if err := json.Unmarshal(raw, &st.Meta); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "meta.json"), err)
	}
	if st.FullChain, err = os.ReadFile(filepath.Join(dir, "fullchain.pem")); err != nil {
		return nil, err
	}
	if st.KeyPEM, err = os.ReadFile(filepath.Join(dir, "key.pem")); err != nil {
		return nil, err
	}
	return &st, nil
}

// Key returns the certificate's private key, generating and storing a
// P-256 key the first time. The key is kept across renewals: nginx reads
// a host's certificate and key from two files at each handshake, and a
// renewal that changed both could let a handshake pair the old
// certificate with the new key.
func (s Store) Key(name string) (crypto.Signer, error) {
	path := filepath.Join(s.certDir(name), "key.pem")
	raw, err := os.ReadFile(path)
	if err == nil {
		b, _ := pem.Decode(raw)
		if b == nil {
			return nil, fmt.Errorf("%s: not PEM", path)
		}
		k, err := x509.ParseECPrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return k, nil
}

// SaveCert stores an issued certificate chain (PEM, leaf first) for name,
// whose key is already stored.
func (s Store) SaveCert(name, directory string, fullChain []byte, now time.Time) (Meta, error) {
	b, _ := pem.Decode(fullChain)
	if b == nil {
		return Meta{}, errors.New("the CA's certificate is not PEM")
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return Meta{}, fmt.Errorf("the CA's certificate: %w", err)
	}
	m := Meta{Name: name, Domains: leaf.DNSNames, Directory: directory, Serial: SerialHex(leaf),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, IssuedAt: now}
	dir := s.certDir(name)
	meta, _ := json.MarshalIndent(m, "", "  ")
	if err := writeFile(filepath.Join(dir, "fullchain.pem"), fullChain, 0o644); err != nil {
		return Meta{}, err
	}
	return m, writeFile(filepath.Join(dir, "meta.json"), meta, 0o644)
}

// SerialHex is a certificate's serial number as colon-free lower-case hex,
// as `openssl x509 -serial` prints it, but lower case.
func SerialHex(c *x509.Certificate) string { return strings.ToLower(c.SerialNumber.Text(16)) }

// account is the stored ACME account of one directory.
type account struct {
	Email     string `json:"email"`
	URI       string `json:"uri"`
	KeyPEM    string `json:"key"`
	Directory string `json:"directory"`
}

func (s Store) accountPath(directory string) string {
	sum := sha256.Sum256([]byte(directory))
	return filepath.Join(s.Dir, "accounts", hex.EncodeToString(sum[:8]), "account.json")
}

func (s Store) loadAccount(directory string) (*account, error) {
	raw, err := os.ReadFile(s.accountPath(directory))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a account
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("%s: %w", s.accountPath(directory), err)
	}
	return &a, nil
}

func (s Store) saveAccount(a account) error {
	raw, _ := json.MarshalIndent(a, "", "  ")
	return writeFile(s.accountPath(a.Directory), raw, 0o600)
}

// Status is status.json: what `polls-agent acme status` prints and `pulumi
// up` reads.
type Status struct {
	Updated   time.Time `json:"updated"`
	Directory string    `json:"directory"`
	// Hosts are every host the router serves, sorted.
	Hosts []HostStatus `json:"hosts"`
	// Records are the order records of certificates, by name; kept for
	// certificates no host wants any more, so a tenant removed and added
	// back resumes its backoff rather than re-ordering at once.
	Records map[string]Record `json:"records"`
}

// HostStatus is one host's certificate as served.
type HostStatus struct {
	Host        string `json:"host"`
	Tenant      string `json:"tenant"`
	Certificate string `json:"certificate"`
	Challenge   string `json:"challenge"`
	// State is "valid" (a certificate is served), "pending" (none yet, no
	// order failed) or "failed" (none, and the last order failed).
	State    string    `json:"state"`
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"notAfter,omitzero"`
	RenewAt  time.Time `json:"renewAt,omitzero"`
	// Error is the CA's (or the DNS provider's) error of the last order,
	// when it failed; FailingSince is the first failure in a row.
	Error        string    `json:"error,omitempty"`
	FailingSince time.Time `json:"failingSince,omitzero"`
	Attempts     int       `json:"attempts,omitempty"`
	NextAttempt  time.Time `json:"nextAttempt,omitzero"`
}

func (s Store) statusPath() string { return filepath.Join(s.Dir, "status.json") }

// LoadStatus reads status.json; a missing file is an empty status.
func (s Store) LoadStatus() (Status, error) {
	st := Status{Records: map[string]Record{}}
	raw, err := os.ReadFile(s.statusPath())
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("%s: %w", s.statusPath(), err)
	}
	if st.Records == nil {
		st.Records = map[string]Record{}
	}
	return st, nil
}

// SaveStatus replaces status.json.
func (s Store) SaveStatus(st Status) error {
	raw, _ := json.MarshalIndent(st, "", "  ")
	return writeFile(s.statusPath(), append(raw, '\n'), 0o644)
}

func (s Store) requestPath(name string) string {
	return filepath.Join(s.Dir, "requests", fileName(name))
}

// RequestRenewal asks the running companion to renew certificate name.
func (s Store) RequestRenewal(name string) error {
	return writeFile(s.requestPath(name), []byte(name+"\n"), 0o644)
}

// TakeRequest reports whether a renewal of name was asked for, and
// forgets the request.
func (s Store) TakeRequest(name string) bool {
	return os.Remove(s.requestPath(name)) == nil
}

// writeFile replaces path atomically: readers see the old content or the
// new, never a part.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
