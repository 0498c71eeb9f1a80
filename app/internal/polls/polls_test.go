package polls

import (
	"strings"
	"testing"
)

func TestValidateText(t *testing.T) {
	// Ensures texts are trimmed and empty or over-long texts are rejected.
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "  What's up?  ", want: "What's up?"},
		{in: "", wantErr: true},
		{in: " \t\n", wantErr: true},
		{in: strings.Repeat("é", MaxTextLen), want: strings.Repeat("é", MaxTextLen)},
		{in: strings.Repeat("x", MaxTextLen+1), wantErr: true},
	}
	for _, tt := range tests {
		got, err := ValidateText("question", tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ValidateText(%q) error = %v; want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("ValidateText(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestPercent(t *testing.T) {
	// Ensures vote shares are computed without dividing by zero.
	p := Poll{Choices: []Choice{{Votes: 1}, {Votes: 3}}}
	total := p.TotalVotes()
	if total != 4 {
		t.Fatalf("TotalVotes() = %d; want 4", total)
	}
	if got := p.Choices[1].Percent(total); got != 75 {
		t.Errorf("Percent = %d; want 75", got)
	}
	if got := (Choice{}).Percent(0); got != 0 {
		t.Errorf("Percent with no votes = %d; want 0", got)
	}
}
