package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHandlerServesModuleCacheReadOnly(t *testing.T) {
	dir := t.TempDir()
	const modFile = "module example.com/m\n\ngo 1.23\n"
	vdir := filepath.Join(dir, "example.com", "m", "@v")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vdir, "v1.0.0.mod"), []byte(modFile), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newHandler(dir))
	t.Cleanup(srv.Close)
	url := srv.URL + "/example.com/m/@v/v1.0.0.mod"

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != modFile {
		t.Fatalf("GET %s = %d %q, want 200 %q", url, resp.StatusCode, body, modFile)
	}

	resp, err = http.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD %s = %d, want 200", url, resp.StatusCode)
	}

	resp, err = http.Get(srv.URL + "/example.com/m/@v/v9.9.9.mod")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET of a missing version = %d, want 404", resp.StatusCode)
	}

	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		req, err := http.NewRequest(method, url, strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s = %d, want 404", method, url, resp.StatusCode)
		}
	}
	if got, err := os.ReadFile(filepath.Join(vdir, "v1.0.0.mod")); err != nil || string(got) != modFile {
		t.Errorf("file changed after write attempts: %q, %v", got, err)
	}
}
