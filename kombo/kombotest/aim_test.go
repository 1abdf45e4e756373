package kombotest

import (
	"testing"
	"time"
)

func TestAim(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name        string
		d, lateness time.Duration
		want        time.Duration
	}{
		{name: "no lateness measured yet", d: 20 * ms, lateness: 0, want: 20 * ms},
		{name: "early by the lateness", d: 20 * ms, lateness: 700 * time.Microsecond, want: 20*ms - 700*time.Microsecond},
		{name: "never more than 2 ms early", d: time.Second, lateness: 50 * ms, want: time.Second - 2*ms},
		{name: "never more than a tenth early", d: 5 * ms, lateness: ms, want: 4500 * time.Microsecond},
		{name: "negative lateness counts as none", d: 20 * ms, lateness: -ms, want: 20 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := aim(tt.d, tt.lateness); got != tt.want {
				t.Errorf("aim(%v, %v) = %v, want %v", tt.d, tt.lateness, got, tt.want)
			}
		})
	}
}

func TestNextLatenessConverges(t *testing.T) {
	// Timers that are always 640 µs late: the average approaches 640 µs and never passes it.
	var avg time.Duration
	for range 200 {
		next := nextLateness(avg, 640*time.Microsecond)
		if next < avg || next > 640*time.Microsecond {
			t.Fatalf("average went from %v to %v for a lateness of 640µs", avg, next)
		}
		avg = next
	}
	if avg < 630*time.Microsecond {
		t.Errorf("average after 200 calls 640µs late = %v, want ≥ 630µs", avg)
	}
	// A timer that fires early (the clock stepped) counts as on time, not as negative lateness.
	if got := nextLateness(0, -5*time.Millisecond); got != 0 {
		t.Errorf("nextLateness(0, -5ms) = %v, want 0", got)
	}
}
