package acme

import (
	"strings"
	"testing"
	"time"
)

// TestParseHosts ensures the router's hosts file is read sorted, comments
// and blank lines skipped, and a malformed line refused by number.
func TestParseHosts(t *testing.T) {
	got, err := ParseHosts(strings.NewReader("# polls\nthor.polls.local thor\n\npolls.potter.example potter\npotter.polls.local potter\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Host{{"polls.potter.example", "potter"}, {"potter.polls.local", "potter"}, {"thor.polls.local", "thor"}}
	if len(got) != len(want) {
		t.Fatalf("ParseHosts = %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("host %d = %v; want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"thor.polls.local\n", "../etc/passwd thor\n", "Thor.local thor\n", "a b c\n"} {
		if _, err := ParseHosts(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("ParseHosts(%q) error = %v; want one naming line 1", bad, err)
		}
	}
}

// TestWanted ensures each host gets its own HTTP-01 certificate, and with
// a DNS provider the domain's tenants share one wildcard by DNS-01 while
// hosts outside it (or two labels deep) keep their own.
func TestWanted(t *testing.T) {
	hosts := []Host{{"a.polls.example", "a"}, {"b.polls.example", "b"}, {"shop.example.org", "b"}, {"x.y.polls.example", "a"}}
	got := Wanted(hosts, "polls.example", false)
	if len(got) != 4 || got[0].Name != "a.polls.example" || got[0].Challenge != HTTP01 {
		t.Errorf("Wanted without DNS = %+v; want one HTTP-01 certificate per host", got)
	}
	got = Wanted(hosts, "polls.example", true)
	names := []string{}
	for _, w := range got {
		names = append(names, w.Name+" "+w.Challenge)
	}
	if want := "*.polls.example dns-01,shop.example.org http-01,x.y.polls.example http-01"; strings.Join(names, ",") != want {
		t.Errorf("Wanted with DNS = %s; want %s", strings.Join(names, ","), want)
	}
	if len(got[0].Hosts) != 2 || got[0].Hosts[0].Name != "a.polls.example" || got[0].Hosts[1].Name != "b.polls.example" {
		t.Errorf("wildcard serves %v; want a and b", got[0].Hosts)
	}
}

// TestDue ensures a certificate is ordered when missing, from another
// directory, for other names, or due for renewal, and otherwise not; a
// backoff holds every reason but an operator's request.
func TestDue(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	w := Want{Name: "thor.polls.example", Challenge: HTTP01}
	dir := "https://ca.example/dir"
	fresh := &Meta{Domains: []string{w.Name}, Directory: dir, NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(89 * 24 * time.Hour)}
	old := &Meta{Domains: []string{w.Name}, Directory: dir, NotBefore: now.Add(-70 * 24 * time.Hour), NotAfter: now.Add(20 * 24 * time.Hour)}
	other := *fresh
	other.Directory = "https://staging.example/dir"
	names := *fresh
	names.Domains = []string{"old.polls.example"}
	backingOff := Record{Attempts: 2, NextAttempt: now.Add(time.Minute)}
	backedOff := Record{Attempts: 2, NextAttempt: now.Add(-time.Second)}
	month := 30 * 24 * time.Hour
	tests := []struct {
		name  string
		have  *Meta
		rec   Record
		force bool
		want  bool
		why   string
	}{
		{"none yet", nil, Record{}, false, true, "no certificate yet"},
		{"fresh", fresh, Record{}, false, false, ""},
		{"within renewBefore", old, Record{}, false, true, "expires"},
		{"other directory", &other, Record{}, false, true, "another ACME directory"},
		{"other names", &names, Record{}, false, true, "issued for old.polls.example"},
		{"none, backing off", nil, backingOff, false, false, "no certificate yet"},
		{"none, backoff over", nil, backedOff, false, true, "no certificate yet"},
		{"due, backing off", old, backingOff, false, false, "expires"},
		{"forced through backoff", fresh, backingOff, true, true, "renewal requested"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := Due(w, tt.have, tt.rec, dir, month, now, tt.force)
			if got != tt.want || !strings.Contains(why, tt.why) {
				t.Errorf("Due = %v, %q; want %v, %q", got, why, tt.want, tt.why)
			}
		})
	}
}

// TestRenewAtNeverInFirstHalf ensures a renewBefore longer than the
// certificate's lifetime cannot make it due at once after issuance.
func TestRenewAtNeverInFirstHalf(t *testing.T) {
	start := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	m := Meta{NotBefore: start, NotAfter: start.Add(6 * 24 * time.Hour)}
	if got, want := m.RenewAt(30*24*time.Hour), start.Add(3*24*time.Hour); !got.Equal(want) {
		t.Errorf("RenewAt of a 6-day certificate with 30d = %v; want half-life %v", got, want)
	}
	m.NotAfter = start.Add(90 * 24 * time.Hour)
	if got, want := m.RenewAt(30*24*time.Hour), start.Add(60*24*time.Hour); !got.Equal(want) {
		t.Errorf("RenewAt of a 90-day certificate = %v; want %v", got, want)
	}
}

// TestBackoff ensures failed orders space out: at most 4 orders in the
// first hour (Let's Encrypt allows 5 failed validations per host an hour),
// capped at 12 h, and an hour at least after a rate limit.
func TestBackoff(t *testing.T) {
	var at time.Duration
	inHour := 1
	for n := 1; n < 10; n++ {
		at += Backoff(n, false)
		if at < time.Hour {
			inHour++
		}
	}
	if inHour > 4 {
		t.Errorf("%d orders within the first hour; want at most 4", inHour)
	}
	if got := Backoff(20, false); got != 12*time.Hour {
		t.Errorf("Backoff(20) = %v; want the 12h cap", got)
	}
	if got := Backoff(1, true); got != time.Hour {
		t.Errorf("Backoff(1, rate limited) = %v; want 1h", got)
	}
	now := time.Now()
	rec := Record{}.Failed(now, "boom", false).Failed(now.Add(time.Hour), "again", false)
	if rec.Attempts != 2 || !rec.FailingSince.Equal(now) || rec.LastError != "again" || !rec.NextAttempt.Equal(now.Add(time.Hour+10*time.Minute)) {
		t.Errorf("record after two failures = %+v", rec)
	}
}
