// Command modproxy serves a Go module cache's download directory as a tiny,
// read-only GOPROXY over plain HTTP.
//
// Why: on our build hosts containers cannot reach the Go module proxy — HTTPS
// from inside a container fails certificate checks — while the host's own Go
// can fill its module cache normally. The cache's cache/download tree
// ($(go env GOMODCACHE)/cache/download) is laid out exactly like the GOPROXY
// protocol ($module/@v/list, $version.info, .mod, .zip), so serving it as
// static files is a valid proxy for every module the host has downloaded:
//
//	go mod download                    # on the host: fill the cache
//	go run ./tools/modproxy &          # listening on http://127.0.0.1:3001
//	docker build --network host --build-arg GOPROXY=http://127.0.0.1:3001 ...
//
// Host networking keeps the traffic on loopback (containers on the default
// bridge cannot be pointed at the host's private addresses here). Checksums
// are still verified against go.sum inside the build.
//
// Only GET and HEAD are served; any other method gets 404. Modules missing
// from the cache are plain 404s, which the go command reports as "not found".
//
// Usage:
//
//	modproxy [-addr 127.0.0.1:3001] [-dir $(go env GOMODCACHE)/cache/download]
//
// It prints "listening on http://ADDR" on stdout once ready (use -addr
// 127.0.0.1:0 for a free port) and exits cleanly on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:3001", "listen address (port 0 picks a free port)")
	dir := flag.String("dir", "", "directory to serve (default: $(go env GOMODCACHE)/cache/download)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("modproxy: ")

	root := *dir
	if root == "" {
		var err error
		if root, err = defaultDir(); err != nil {
			log.Fatal(err)
		}
	}
	if fi, err := os.Stat(root); err != nil {
		log.Fatal(err)
	} else if !fi.IsDir() {
		log.Fatalf("%s is not a directory", root)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: newHandler(root), ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()

	fmt.Printf("listening on http://%s\n", ln.Addr())
	log.Printf("serving %s", root)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// defaultDir is $(go env GOMODCACHE)/cache/download.
func defaultDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMODCACHE: %w (pass -dir)", err)
	}
	modcache := strings.TrimSpace(string(out))
	if modcache == "" {
		return "", errors.New("go env GOMODCACHE is empty (pass -dir)")
	}
	return filepath.Join(modcache, "cache", "download"), nil
}

// newHandler serves dir read-only: GET and HEAD via http.FileServer, 404 for
// every other method.
func newHandler(dir string) http.Handler {
	files := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}
