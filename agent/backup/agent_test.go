package backup

import "testing"

func TestStuckStream(t *testing.T) {
	for _, c := range []struct {
		quick, spooled int
		want           bool
	}{
		{quick: 0, spooled: 3, want: false},
		{quick: 2, spooled: 3, want: false}, // a restart or two: retry as is
		{quick: 3, spooled: 1, want: true},
		{quick: 5, spooled: 0, want: false}, // nothing in the spool to blame
	} {
		if got := stuckStream(c.quick, c.spooled); got != c.want {
			t.Errorf("stuckStream(%d, %d) = %v, want %v", c.quick, c.spooled, got, c.want)
		}
	}
}
