// Package dockerlog reads container logs as the docker provider reports them.
package dockerlog

import (
	"encoding/binary"
	"strings"
)

// Demux turns a container log as Docker's attach API returns it for a
// container without a TTY (frames of an 8-byte header: stream, three zero
// bytes, big-endian length, then the payload) into plain text. Input that is
// not framed is returned as it is, so a TTY log or an already plain log reads
// the same.
func Demux(raw string) string {
	var b strings.Builder
	rest := raw
	for len(rest) > 0 {
		if len(rest) < 8 || rest[0] > 2 || rest[1] != 0 || rest[2] != 0 || rest[3] != 0 {
			return raw
		}
		n := int(binary.BigEndian.Uint32([]byte(rest[4:8])))
		if len(rest) < 8+n {
			return raw
		}
		b.WriteString(rest[8 : 8+n])
		rest = rest[8+n:]
	}
	return b.String()
}
