package acme

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The self-check: before an HTTP-01 order, the companion asks the router
// itself for a file it put in the webroot, with the host's name, the way
// the CA will. Only if the router serves it is the CA asked. A router
// that does not serve the challenge yet (its config not reloaded, a
// tenant's server without the webroot location) would otherwise fail the
// validation at the CA, and a CA counts those: Let's Encrypt allows 5
// failed validations per host and account an hour, and each one here
// costs the host a backoff of 5 minutes and more. A failed self-check
// asks nothing of the CA and is tried again within seconds.
//
// It proves the router's side only: that the CA can reach the router
// (DNS, the host's firewall, the published port) is not checked here.

// selfCheckError is a self-check that failed: the CA was not asked.
type selfCheckError struct{ msg string }

func (e *selfCheckError) Error() string { return e.msg }

// SelfCheckBackoff is how long to wait after the n-th failed self-check
// in a row: 5 seconds, doubling to at most 5 minutes, the first backoff
// of a failed order. Nothing is asked of the CA, so it can be short.
func SelfCheckBackoff(n int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < n && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// selfCheck asks the router at base (its plain HTTP, "http://127.0.0.1:80"
// in its network namespace) for a fresh file of the webroot, as each of
// hosts. It returns a selfCheckError naming the first host the router does
// not serve it for.
func selfCheck(ctx context.Context, client *http.Client, base string, live Live, hosts []Host) error {
	dir := filepath.Join(live.Webroot(), ".well-known", "acme-challenge")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	name := "polls-self-check-" + hex.EncodeToString(tok)
	want := "polls self-check " + hex.EncodeToString(tok[:8])
	path := filepath.Join(dir, name)
	// 0644: nginx's workers read it, as they read lego's answers.
	if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
		return err
	}
	defer os.Remove(path)
	for _, h := range hosts {
		url := strings.TrimSuffix(base, "/") + "/.well-known/acme-challenge/" + name
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Host = h.Name
		resp, err := client.Do(req)
		if err != nil {
			return &selfCheckError{fmt.Sprintf("self-check (the CA was not asked): the router does not answer for %s: %v", h.Name, err)}
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK && string(body) == want {
			continue
		}
		got := fmt.Sprintf("status %d", resp.StatusCode)
		if resp.StatusCode == http.StatusOK {
			got = "another body than the file's"
		}
		return &selfCheckError{fmt.Sprintf("self-check (the CA was not asked): the router answered %s for http://%s/.well-known/acme-challenge/%s, not the file the companion put there: does its config serve the webroot for this host yet?", got, h.Name, name)}
	}
	return nil
}

// isSelfCheck reports whether err is a failed self-check.
func isSelfCheck(err error) bool {
	var sc *selfCheckError
	return errors.As(err, &sc)
}
