package backup

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// segmentFile is a WAL segment's name, with pg_receivewal's .partial suffix
// on the one it is writing.
var segmentFile = regexp.MustCompile(`^([0-9A-F]{24})(\.partial)?$`)

// SegmentName is the name of the segment holding lsn ("X/Y") on timeline,
// for segments of segSize bytes.
func SegmentName(lsn string, timeline int, segSize uint64) (string, error) {
	hi, lo, ok := strings.Cut(lsn, "/")
	if !ok {
		return "", fmt.Errorf("LSN %q", lsn)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil || segSize == 0 {
		return "", fmt.Errorf("LSN %q", lsn)
	}
	segNo := (h<<32 | l) / segSize
	perID := (uint64(1) << 32) / segSize
	return fmt.Sprintf("%08X%08X%08X", timeline, segNo/perID, segNo%perID), nil
}

// signature sums up the spool's segments (names, sizes, modification
// times): it changes whenever pg_receivewal has written more log.
func signature(dir string) (string, int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", 0, err
	}
	var b strings.Builder
	n := 0
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		n++
		fmt.Fprintf(&b, "%s %d %d\n", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	return b.String(), n, nil
}

// trimSpool removes the segments before first, which a new base backup no
// longer needs; history files stay.
func trimSpool(dir, first string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range entries {
		m := segmentFile.FindStringSubmatch(e.Name())
		if m == nil || m[1] >= first {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// segments lists the spool's segment files (partial ones too), sorted.
func segments(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if segmentFile.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}
