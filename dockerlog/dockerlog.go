// Package dockerlog reads container logs as the docker provider reports them
// (a container's containerLogs output). Streams read from the engine itself
// are demultiplexed with moby's stdcopy (package dockerapi); stdcopy needs
// intact frames, which the provider's string does not keep.
package dockerlog

import (
	"encoding/binary"
	"strings"
	"unicode/utf8"
)

// Demux turns a container log as Docker's API returns it for a container
// without a TTY (frames of an 8-byte header: stream, three zero bytes,
// big-endian length, then the payload) into plain text.
//
// The provider reads that stream line by line and the bridge carries it as a
// string, so length bytes may arrive altered (a newline re-added, a byte of
// 0x80 or more turned into U+FFFD). When the frames do not add up, Demux
// drops each header by its shape instead. Input without headers is returned
// as it is.
func Demux(raw string) string {
	if s, ok := strict(raw); ok {
		return s
	}
	return lenient(raw)
}

func strict(raw string) (string, bool) {
	var b strings.Builder
	rest := raw
	for len(rest) > 0 {
		if len(rest) < 8 || !isHeaderStart(rest) {
			return "", false
		}
		n := int(binary.BigEndian.Uint32([]byte(rest[4:8])))
		if len(rest) < 8+n {
			return "", false
		}
		b.WriteString(rest[8 : 8+n])
		rest = rest[8+n:]
	}
	return b.String(), true
}

// lenient removes every "stream, 0, 0, 0" marker and the four length units
// after it, a unit being one byte or one replacement character.
func lenient(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); {
		if i+4 <= len(raw) && isHeaderStart(raw[i:]) {
			i += 4
			for k := 0; k < 4 && i < len(raw); k++ {
				if r, size := utf8.DecodeRuneInString(raw[i:]); r == utf8.RuneError {
					i += size
				} else {
					i++
				}
			}
			continue
		}
		b.WriteByte(raw[i])
		i++
	}
	return b.String()
}

func isHeaderStart(s string) bool {
	return (s[0] == 1 || s[0] == 2) && s[1] == 0 && s[2] == 0 && s[3] == 0
}
