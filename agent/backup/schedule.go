package backup

import (
	"fmt"
	"hash/fnv"
	"time"
)

// ParseSchedule reads how often a base backup is taken: "hourly", "daily"
// (the default), "weekly", or a duration from 15m to 168h.
func ParseSchedule(s string) (time.Duration, error) {
	switch s {
	case "", "daily":
		return 24 * time.Hour, nil
	case "hourly":
		return time.Hour, nil
	case "weekly":
		return 7 * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 15*time.Minute || d > 7*24*time.Hour {
		return 0, fmt.Errorf("schedule %q: use hourly, daily, weekly or a duration from 15m to 168h", s)
	}
	return d, nil
}

// offset returns the base backup times of tenant: every interval, at an
// offset from the Unix epoch derived from the tenant's name, so that a
// hundred tenants' daily backups do not all start at midnight.
func offset(tenant string, interval time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(tenant))
	return time.Duration(h.Sum64() % uint64(interval))
}

// NextBase returns when the next base backup is due: at once when there is
// none (last is zero), else the tenant's first slot after last.
func NextBase(tenant string, interval time.Duration, last time.Time) time.Time {
	if last.IsZero() {
		return time.Time{}
	}
	off := offset(tenant, interval)
	since := last.Sub(time.Unix(0, 0).Add(off))
	n := since / interval
	return time.Unix(0, 0).Add(off + (n+1)*interval).UTC()
}
