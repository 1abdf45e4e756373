package main

import (
	"math"
	"testing"
	"time"
)

func at(t0 time.Time, s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func TestPhaseMeasures(t *testing.T) {
	t0 := time.Now()
	r := &runResult{t0: t0, elapsed: 5 * time.Second,
		spec:    runSpec{replicas: 1, phases: []phase{{0, 6}, {2 * time.Second, 2}, {4 * time.Second, 6}}, phasesEnd: 6 * time.Second},
		phaseAt: []float64{0, 2.01, 4.02},
		calls: []call{
			{start: at(t0, 0), end: at(t0, 2), status: 200},                     // all of phase 1
			{start: at(t0, 1.5), end: at(t0, 2.51), status: 200},                // 0.51 s in 1, 0.5 s in 2
			{start: at(t0, 2.2), end: at(t0, 2.2), code: codeConcurrency},       // refused: no time
			{start: at(t0, 3), end: at(t0, 3.5), status: 200},                   // 0.5 s in 2
			{start: at(t0, 4.5), end: at(t0, 5), status: 200, replica: 0},       // phase 3
			{start: at(t0, 4.6), end: at(t0, 4.7), status: 404, code: "X.NOPE"}, // admitted, not a deletion
		},
	}
	w := r.windows()
	if len(w) != 3 || !w[0].ok || w[0].from != 0 || w[0].to != 2.01 || w[1].to != 4.02 ||
		w[2].from != 4.02 || w[2].to != 5 { // the last phase ends at the run's end (6.02 nominal)
		t.Fatalf("windows = %+v", w)
	}
	if got := r.meanInFlight(w[0].from, w[0].to); math.Abs(got-(2+0.51)/2.01) > 1e-9 {
		t.Errorf("phase 1 in flight = %v", got)
	}
	if got := r.meanInFlight(w[1].from, w[1].to); math.Abs(got-(0.5+0.5)/2.01) > 1e-9 {
		t.Errorf("phase 2 in flight = %v", got)
	}
	if share, rej, n := r.rejectedIn(w[1].from, w[1].to); rej != 1 || n != 2 || share != 0.5 {
		t.Errorf("phase 2 rejected = %v %d %d", share, rej, n)
	}
	samples := []sample{{t: 2.0, cap: 6}, {t: 2.06, cap: 3}, {t: 2.11, cap: 2}, {t: 4.05, cap: 2}, {t: 4.3, cap: 6}, {t: 4.3, replica: 1, cap: 2}}
	if got, ok := followTime(samples, 2.01, 4.02, 2); !ok || math.Abs(got-0.1) > 1e-9 {
		t.Errorf("follow the drop = %v %v", got, ok)
	}
	if got, ok := followTime(samples, 4.02, 5, 6); !ok || math.Abs(got-0.28) > 1e-9 {
		t.Errorf("follow the rise = %v %v", got, ok)
	}
	if _, ok := followTime(samples, 4.02, 4.2, 6); ok {
		t.Error("followed a rise after the window")
	}

	// The run ended before the last change: the last phase was not reached.
	r.phaseAt = r.phaseAt[:2]
	r.elapsed = 3 * time.Second
	w = r.windows()
	if !w[1].ok || w[1].to != 3 || w[2].ok {
		t.Errorf("short run windows = %+v", w)
	}
}

func TestShiftN(t *testing.T) {
	p := params{latency: 20 * time.Millisecond, shiftLimits: []int{6, 2, 6}, shiftPhase: 8 * time.Second}
	if got := shiftN(p); got != 6160 {
		t.Errorf("shiftN = %d, want 6160", got)
	}
	p.shiftPhase = time.Second
	if got := shiftN(p); got != 770 {
		t.Errorf("shiftN = %d, want 770", got)
	}
	if _, err := parseLimits("6,0,6"); err == nil {
		t.Error("limit 0 accepted")
	}
	if l, err := parseLimits(" 6, 2 ,6"); err != nil || len(l) != 3 || l[1] != 2 {
		t.Errorf("parseLimits = %v, %v", l, err)
	}
}

func TestDeletedSharesAndRoundList(t *testing.T) {
	r := &runResult{spec: runSpec{replicas: 2}, calls: []call{
		{status: 200, replica: 0}, {status: 200, replica: 1}, {status: 200, replica: 1}, {status: 200, replica: 1},
		{status: 429, code: codeConcurrency, replica: 0},
	}}
	s := r.deletedShares()
	if s[0] != 0.25 || s[1] != 0.75 {
		t.Errorf("shares = %v", s)
	}
	got := roundList([]float64{0.93, 0.91, 0.95}, func(v float64) string { return time.Duration(v * 100).String() },
		func(v float64) float64 { return v })
	if want := "93ns, 91ns, 95ns (worst 91ns, best 95ns)"; got != want {
		t.Errorf("roundList = %q, want %q", got, want)
	}
	if got := roundList([]float64{1}, func(float64) string { return "x" }, func(v float64) float64 { return v }); got != "x" {
		t.Errorf("one round = %q", got)
	}
}
