package acme

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Live is the directory the companion shares with the router (mounted
// read-only there):
//
//	certs/<host>.crt   the host's certificate chain, leaf first
//	certs/<host>.key   its private key, readable by nginx's workers only
//	webroot/.well-known/acme-challenge/<token>   HTTP-01 answers
//
// nginx loads a host's files at each TLS handshake (ssl_certificate with
// a variable), so a file replaced here is served from the next handshake
// on, without a reload; and the router redirects a host's HTTP to HTTPS
// only while its .crt exists.
type Live struct {
	Dir string
	// Owner returns the uid and gid nginx's workers run as, who must read
	// the keys.
	Owner func() (uid, gid int, err error)
}

// CertDir and Webroot are the two parts of the live directory.
func (l Live) CertDir() string { return filepath.Join(l.Dir, "certs") }

// Webroot is where HTTP-01 answers are written.
func (l Live) Webroot() string { return filepath.Join(l.Dir, "webroot") }

// Publish makes the live directory serve exactly served: host name to the
// certificate it serves. A file is rewritten only when its content
// changes; files of other hosts are removed. The key goes in place before
// the certificate, whose appearance is what turns HTTPS on for the host.
func (l Live) Publish(served map[string]*Stored) error {
	dir := l.CertDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	uid, gid, ownerErr := -1, -1, error(nil)
	if l.Owner != nil {
		uid, gid, ownerErr = l.Owner()
	}
	for host, st := range served {
		key, crt := filepath.Join(dir, host+".key"), filepath.Join(dir, host+".crt")
		if !same(key, st.KeyPEM) {
			if ownerErr != nil {
				errs = append(errs, fmt.Errorf("%s: %w", host, ownerErr))
				continue
			}
			if err := writeOwned(key, st.KeyPEM, uid, gid); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", host, err))
				continue
			}
		}
		if !same(crt, st.FullChain) {
			if err := writeFile(crt, st.FullChain, 0o644); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", host, err))
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, e := range entries {
		host := strings.TrimSuffix(strings.TrimSuffix(e.Name(), ".crt"), ".key")
		if _, keep := served[host]; !keep || strings.HasPrefix(e.Name(), ".") {
			// The certificate first: the host stops redirecting to HTTPS
			// before its key goes.
			if strings.HasSuffix(e.Name(), ".key") {
				_ = os.Remove(filepath.Join(dir, host+".crt"))
			}
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return errors.Join(errs...)
}

func same(path string, content []byte) bool {
	old, err := os.ReadFile(path)
	return err == nil && bytes.Equal(old, content)
}

// writeOwned writes a key file only uid and gid can read, atomically.
func writeOwned(path string, data []byte, uid, gid int) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if uid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			f.Close()
			return err
		}
		if err := f.Chmod(0o400); err != nil {
			f.Close()
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// NginxWorkerOwner returns the uid and gid of an nginx worker process
// visible under proc (the companion shares the router's PID namespace).
func NginxWorkerOwner(proc string) func() (int, int, error) {
	return func() (int, int, error) {
		entries, err := os.ReadDir(proc)
		if err != nil {
			return 0, 0, err
		}
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			cmd, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline"))
			if err != nil || !bytes.HasPrefix(cmd, []byte("nginx: worker process")) {
				continue
			}
			status, err := os.ReadFile(filepath.Join(proc, e.Name(), "status"))
			if err != nil {
				continue
			}
			uid, gid := -1, -1
			for line := range strings.SplitSeq(string(status), "\n") {
				f := strings.Fields(line)
				if len(f) >= 2 && f[0] == "Uid:" {
					uid, _ = strconv.Atoi(f[1])
				}
				if len(f) >= 2 && f[0] == "Gid:" {
					gid, _ = strconv.Atoi(f[1])
				}
			}
			if uid >= 0 && gid >= 0 {
				return uid, gid, nil
			}
		}
		return 0, 0, errors.New("no nginx worker process is visible to read the key: the companion must share the router's PID namespace, with nginx running")
	}
}

// cleanWebroot removes HTTP-01 answers older than an hour: an order cut
// short by a restart leaves its token behind.
func (l Live) cleanWebroot(now time.Time) {
	dir := filepath.Join(l.Webroot(), ".well-known", "acme-challenge")
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil && now.Sub(info.ModTime()) > time.Hour {
			_ = os.Remove(p)
		}
		return nil
	})
}
