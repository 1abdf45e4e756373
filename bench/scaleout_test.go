package main

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestBacklogMeasures(t *testing.T) {
	t0 := time.Now()
	r := &runResult{t0: t0, spec: runSpec{replicas: 2}}
	// Results from 1 s to 11 s: 10 a second, but 20 a second in the last second.
	for i := range 100 {
		r.resultAt = append(r.resultAt, at(t0, 1+float64(i)/10))
	}
	for i := range 20 {
		r.resultAt = append(r.resultAt, at(t0, 10.9+float64(i+1)*0.005))
	}
	first, last, ok := r.tenths()
	if !ok || math.Abs(first[0]-1) > 1e-9 || math.Abs(first[1]-2) > 1e-9 || math.Abs(last[0]-10) > 1e-9 || math.Abs(last[1]-11) > 1e-9 {
		t.Fatalf("tenths = %v %v %v", first, last, ok)
	}
	f, l, ok := r.ratesAtEnds()
	if !ok || f != 11 || l != 30 { // [1, 2] holds 11 results; [10, 11] holds 10 + 20
		t.Errorf("rates = %v %v %v", f, l, ok)
	}
	if got := steadiness(f, l); math.Abs(got-11.0/30) > 1e-9 {
		t.Errorf("steadiness = %v", got)
	}
	r.rssSamples = []rssSample{{t: 0.5, replica: 0, rss: 1 << 30}, // before the first result: not counted
		{t: 1.5, replica: 0, rss: 100}, {t: 1.9, replica: 1, rss: 200}, {t: 1.7, replica: 0, rss: 110},
		{t: 5, replica: 1, rss: 900}, {t: 10.5, replica: 0, rss: 115}, {t: 10.6, replica: 1, rss: 210}}
	a, z := r.rssAtEnds()
	if !slices.Equal(a, []uint64{110, 200}) || !slices.Equal(z, []uint64{115, 210}) {
		t.Errorf("rss at the ends = %v %v", a, z)
	}
	if g, ok := r.rssGrowth(); !ok || math.Abs(g-0.05) > 1e-9 {
		t.Errorf("growth = %v %v", g, ok)
	}
	r.rssSamples = r.rssSamples[:4] // no sample in the last tenth
	if _, ok := r.rssGrowth(); ok {
		t.Error("growth without a sample at the end")
	}
}

func TestScaleOutScenarios(t *testing.T) {
	p := params{scaleReplicas: 4, scaleMax: 16, scaleLatency: 20 * time.Millisecond, nScale: 4000,
		sharedLimit: 8, nShared: 4000, nBacklog: 100000, scaleRounds: 3}
	s := scaleOutScenarios(p)
	if len(s) != 3 || s[0].id != "9" || s[1].id != "10" || s[2].id != "11" {
		t.Fatalf("scenarios = %+v", s)
	}
	pairs := s[0].pairs()
	if len(pairs) != 4 || pairs[3][0].replicas != 4 || pairs[3][0].n != 16000 || pairs[3][1].kind != "baseline" ||
		pairs[3][0].fake.ConcurrencyLimit != 256 || pairs[3][0].maxConc != 16 {
		t.Errorf("scenario 9's step 4 = %+v", pairs[3])
	}
	if p10 := s[1].pairs(); p10[2][0].n != 4000 || p10[2][0].fake.ConcurrencyLimit != 8 {
		t.Errorf("scenario 10's step 3 = %+v", p10[2][0])
	}
	if p11 := s[2].pairs(); len(p11) != 1 || !p11[0][0].backlog || !p11[0][1].backlog || p11[0][0].replicas != 3 {
		t.Errorf("scenario 11 = %+v", p11)
	}
	figs := []figure{{scenario: "10 x"}, {scenario: "9 y"}, {scenario: "1 z"}, {scenario: "11 w"}}
	slices.SortStableFunc(figs, func(a, b figure) int { return scenarioNumber(a) - scenarioNumber(b) })
	if figs[0].scenario != "1 z" || figs[1].scenario != "9 y" || figs[3].scenario != "11 w" {
		t.Errorf("order = %v", figs)
	}
}
