package metrics

import "testing"

// BenchmarkObserve is the exporter's cost per request line.
func BenchmarkObserve(b *testing.B) {
	r := NewRouter("polls-dev")
	l := []byte(nginxLine("thor", "200", "0.004"))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Observe(l); err != nil {
			b.Fatal(err)
		}
	}
}
