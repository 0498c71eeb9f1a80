package dockerlog

import (
	"encoding/binary"
	"strings"
	"testing"
)

func frame(stream byte, s string) string {
	h := make([]byte, 8)
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
	return string(h) + s
}

// TestDemux ensures framed logs become plain text in order, stdout and
// stderr interleaved, and unframed or truncated input comes back unchanged.
func TestDemux(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"stdout and stderr", frame(1, "migrating\n") + frame(2, "error: boom\n") + frame(1, "done\n"), "migrating\nerror: boom\ndone\n"},
		{"plain text", "already plain\n", "already plain\n"},
		{"truncated frame", frame(1, "whole\n")[:10], "wh"},
		{"length byte turned into U+FFFD", "\x02\x00\x00\x00\x00\x00\x00\uFFFD" + strings.Repeat("e", 200) + "\n", strings.Repeat("e", 200) + "\n"},
		{"line-by-line read adds a newline", frame(1, "no newline") + "\n" + frame(2, "err\n"), "no newline\nerr\n"},
		{"bad stream byte", "\x07\x00\x00\x00\x00\x00\x00\x01x", "\x07\x00\x00\x00\x00\x00\x00\x01x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Demux(tt.in); got != tt.want {
				t.Errorf("Demux(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}
