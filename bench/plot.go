package main

import (
	"cmp"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	blue   = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	red    = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	grey   = color.RGBA{R: 90, G: 90, B: 90, A: 255}
)

// baselinePanel is the lower panel of the pictures: the baseline's calls in flight as
// Kombo saw them, Kombo's limit (drawn by addLimit) and the calls it rejected.
func baselinePanel(title string, b *runResult, addLimit func(*plot.Plot) error) (*plot.Plot, error) {
	bottom := plot.New()
	bottom.Title.Text = title
	bottom.X.Label.Text = "seconds since the first publish"
	bottom.Y.Label.Text = "calls"
	bLine, err := plotter.NewLine(komboInFlight(b, 0.05))
	if err != nil {
		return nil, err
	}
	bLine.Color, bLine.Width = orange, vg.Points(1)
	bottom.Add(plotter.NewGrid(), bLine)
	bottom.Legend.Add("calls in flight at Kombo", bLine)
	if err := addLimit(bottom); err != nil {
		return nil, err
	}
	if err := addRejects(bottom, b); err != nil {
		return nil, err
	}
	return bottom, nil
}

// byTime returns a copy of samples sorted by time (replicas are sampled in turn).
func byTime(samples []sample) []sample {
	s := slices.Clone(samples)
	slices.SortFunc(s, func(a, b sample) int { return cmp.Compare(a.t, b.t) })
	return s
}

// plotAdaptive draws scenario 2: on top the daemon's cap and calls in flight (from its
// /metrics every 50 ms), below the baseline's calls in flight as Kombo saw them; each with
// Kombo's limit and the calls it rejected per 100 ms.
func plotAdaptive(path string, d, b *runResult, p params) error {
	limit := float64(p.adaptiveLimit)
	top := plot.New()
	top.Title.Text = fmt.Sprintf("integration-deleter: Kombo allows %d calls at once, KOMBO_MAX_CONCURRENCY=%d (N=%d, L=%s)",
		p.adaptiveLimit, p.adaptiveMax, p.n, p.latency)
	top.Y.Label.Text = "calls"
	if err := addCapAndInFlight(top, d.samples); err != nil {
		return err
	}
	return saveOverBaseline(path, top, d, b, limit, fmt.Sprintf("plain baseline: fixed semaphore of %d, per-worker backoff", p.adaptiveMax),
		float64(p.adaptiveMax)+2)
}

// saveOverBaseline adds Kombo's fixed limit and its rejections to top, draws the baseline
// below it (titled baselineTitle) with the same limit, and saves both to path, y up to yMax.
func saveOverBaseline(path string, top *plot.Plot, d, b *runResult, limit float64, baselineTitle string, yMax float64) error {
	if err := addLimitAndRejects(top, d, limit); err != nil {
		return err
	}
	bottom, err := baselinePanel(baselineTitle, b, func(pl *plot.Plot) error { return addConstLimit(pl, limit) })
	if err != nil {
		return err
	}
	return saveTwo(path, top, bottom, max(d.elapsed.Seconds(), b.elapsed.Seconds()), yMax)
}

func addLimitAndRejects(pl *plot.Plot, r *runResult, limit float64) error {
	if err := addConstLimit(pl, limit); err != nil {
		return err
	}
	return addRejects(pl, r)
}

// addConstLimit draws Kombo's limit as a dashed line across the plot.
func addConstLimit(pl *plot.Plot, limit float64) error {
	lim := plotter.NewFunction(func(float64) float64 { return limit })
	lim.Color, lim.Width, lim.Dashes = grey, vg.Points(1), []vg.Length{vg.Points(4), vg.Points(3)}
	pl.Add(lim)
	pl.Legend.Add(fmt.Sprintf("Kombo's limit (%.0f)", limit), lim)
	return nil
}

// addRejects marks the calls Kombo rejected for concurrency, per 100 ms.
func addRejects(pl *plot.Plot, r *runResult) error {
	rej := rejectsPer(r, 0.1)
	if len(rej) == 0 {
		return nil
	}
	sc, err := plotter.NewScatter(rej)
	if err != nil {
		return err
	}
	sc.GlyphStyle.Color, sc.GlyphStyle.Shape, sc.GlyphStyle.Radius = red, draw.CrossGlyph{}, vg.Points(2.5)
	pl.Add(sc)
	pl.Legend.Add("calls rejected (CONCURRENCY_LIMIT_EXCEEDED) per 100 ms", sc)
	return nil
}

// rejectsPer returns, for each bin of the run with rejections, how many calls Kombo rejected.
func rejectsPer(r *runResult, bin float64) plotter.XYs {
	counts := map[int]int{}
	for _, c := range r.calls {
		if c.code == codeConcurrency {
			counts[int(c.start.Sub(r.t0).Seconds()/bin)]++
		}
	}
	keys := make([]int, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make(plotter.XYs, 0, len(keys))
	for _, k := range keys {
		out = append(out, plotter.XY{X: (float64(k) + 0.5) * bin, Y: float64(counts[k])})
	}
	return out
}

// komboInFlight returns the calls Kombo admitted that were in flight, every step seconds.
func komboInFlight(r *runResult, step float64) plotter.XYs {
	n := int(r.elapsed.Seconds()/step) + 1
	diff := make([]int, n+1)
	for _, c := range r.calls {
		if c.code == codeConcurrency || c.end.IsZero() {
			continue
		}
		a := int(c.start.Sub(r.t0).Seconds()/step + 0.999999)
		z := int(c.end.Sub(r.t0).Seconds()/step + 0.999999)
		a, z = max(a, 0), min(z, n)
		if a < z {
			diff[a]++
			diff[z]--
		}
	}
	out := make(plotter.XYs, n)
	cur := 0
	for i := range n {
		cur += diff[i]
		out[i] = plotter.XY{X: float64(i) * step, Y: float64(cur)}
	}
	return out
}

// plotReplicas draws scenario 6: each replica's cap, the sum of the caps and of the calls in
// flight, Kombo's limit and the calls it rejected per 100 ms; below, the two baseline
// replicas' calls in flight as Kombo saw them.
func plotReplicas(path string, d, b *runResult, p params) error {
	limit := float64(p.adaptiveLimit)
	top := plot.New()
	top.Title.Text = fmt.Sprintf("two integration-deleter replicas on one consumer: Kombo allows %d calls at once, each KOMBO_MAX_CONCURRENCY=%d",
		p.adaptiveLimit, p.adaptiveMax)
	top.Y.Label.Text = "calls"
	colors := []color.Color{blue, color.RGBA{R: 44, G: 160, B: 44, A: 255}}
	latestCap := make([]float64, d.spec.replicas)
	latestIn := make([]float64, d.spec.replicas)
	var sumCap, sumIn plotter.XYs
	per := make([]plotter.XYs, d.spec.replicas)
	samples := byTime(d.samples)
	for _, s := range samples {
		latestCap[s.replica], latestIn[s.replica] = s.cap, s.inFlight
		per[s.replica] = append(per[s.replica], plotter.XY{X: s.t, Y: s.cap})
		c, in := 0.0, 0.0
		for i := range latestCap {
			c += latestCap[i]
			in += latestIn[i]
		}
		sumCap = append(sumCap, plotter.XY{X: s.t, Y: c})
		sumIn = append(sumIn, plotter.XY{X: s.t, Y: in})
	}
	top.Add(plotter.NewGrid())
	sumLine, err := plotter.NewLine(sumCap)
	if err != nil {
		return err
	}
	sumLine.StepStyle = plotter.PostStep
	sumLine.Color, sumLine.Width = grey, vg.Points(2.5)
	top.Add(sumLine)
	top.Legend.Add("sum of the caps", sumLine)
	for i, xy := range per {
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		l.StepStyle = plotter.PostStep
		l.Color, l.Width = colors[i%len(colors)], vg.Points(1.5)
		top.Add(l)
		top.Legend.Add(fmt.Sprintf("replica %d: concurrency cap", i+1), l)
	}
	inLine, err := plotter.NewLine(sumIn)
	if err != nil {
		return err
	}
	inLine.Color, inLine.Width = orange, vg.Points(0.7)
	top.Add(inLine)
	top.Legend.Add("sum of the calls in flight", inLine)
	return saveOverBaseline(path, top, d, b, limit,
		fmt.Sprintf("two plain baseline replicas: fixed semaphores of %d, per-worker backoff", p.adaptiveMax), 2*limit+2)
}

// saveTwo aligns two plots one above the other on common axes and writes them as a PNG.
func saveTwo(path string, top, bottom *plot.Plot, xmax, ymax float64) error {
	for _, pl := range []*plot.Plot{top, bottom} {
		pl.X.Min, pl.X.Max = 0, xmax
		pl.Y.Min, pl.Y.Max = 0, ymax
	}
	return savePanels(path, top, bottom)
}

// savePanels aligns plots one above the other and writes them as a PNG, 3.5 inches high each.
func savePanels(path string, plots ...*plot.Plot) error {
	column := make([][]*plot.Plot, len(plots))
	for i, pl := range plots {
		pl.Legend.Top = true
		pl.Legend.TextStyle.Font.Size = vg.Points(9)
		pl.Title.TextStyle.Font.Size = vg.Points(11)
		column[i] = []*plot.Plot{pl}
	}
	w, h := 10*vg.Inch, vg.Length(len(plots))*3.5*vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	canvases := plot.Align(column, tiles, dc)
	for i, pl := range plots {
		pl.Draw(canvases[i][0])
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// limitSteps is the fake's concurrency limit over a run with phases, as a step line: each
// limit from the moment the fake changed to it, the last one until the run's end.
func limitSteps(r *runResult) plotter.XYs {
	var xy plotter.XYs
	for i, at := range r.phaseAt {
		xy = append(xy, plotter.XY{X: at, Y: float64(r.spec.phases[i].limit)})
	}
	if n := len(xy); n > 0 {
		xy = append(xy, plotter.XY{X: max(r.elapsed.Seconds(), xy[n-1].X), Y: xy[n-1].Y})
	}
	return xy
}

// addStepLimit draws the fake's changing limit of r as a dashed step line.
func addStepLimit(pl *plot.Plot, r *runResult) error {
	xy := limitSteps(r)
	if len(xy) == 0 {
		return nil
	}
	lim, err := plotter.NewLine(xy)
	if err != nil {
		return err
	}
	lim.StepStyle = plotter.PostStep
	lim.Color, lim.Width, lim.Dashes = grey, vg.Points(1.5), []vg.Length{vg.Points(4), vg.Points(3)}
	pl.Add(lim)
	pl.Legend.Add("Kombo's limit (changed by the bench)", lim)
	return nil
}

// addCapAndInFlight draws a daemon's cap (a step line) and its calls in flight, from the
// scrapes of its /metrics.
func addCapAndInFlight(pl *plot.Plot, samples []sample) error {
	var capXY, inXY plotter.XYs
	for _, s := range samples {
		capXY = append(capXY, plotter.XY{X: s.t, Y: s.cap})
		inXY = append(inXY, plotter.XY{X: s.t, Y: s.inFlight})
	}
	capLine, err := plotter.NewLine(capXY)
	if err != nil {
		return err
	}
	capLine.StepStyle = plotter.PostStep
	capLine.Color, capLine.Width = blue, vg.Points(2)
	inLine, err := plotter.NewLine(inXY)
	if err != nil {
		return err
	}
	inLine.Color, inLine.Width = orange, vg.Points(1)
	pl.Add(plotter.NewGrid(), capLine, inLine)
	pl.Legend.Add("concurrency cap (integration_deleter_concurrency_cap)", capLine)
	pl.Legend.Add("calls in flight (integration_deleter_kombo_calls_in_flight)", inLine)
	return nil
}

// plotLimitShift draws scenario 7: on top the daemon's cap and calls in flight (from its
// /metrics every 50 ms), below the baseline's calls in flight as Kombo saw them; each with
// the fake's limit as a step line and the calls it rejected per 100 ms.
func plotLimitShift(path string, d, b *runResult, p params) error {
	xmax := max(d.elapsed.Seconds(), b.elapsed.Seconds())
	top := plot.New()
	top.Title.Text = fmt.Sprintf("integration-deleter: Kombo's limit %s, %s each, KOMBO_MAX_CONCURRENCY=%d (N=%d, L=%s)",
		limitsText(p.shiftLimits), p.shiftPhase, p.shiftMax, d.spec.n, p.latency)
	top.Y.Label.Text = "calls"
	if err := addCapAndInFlight(top, byTime(d.samples)); err != nil {
		return err
	}
	if err := addStepLimit(top, d); err != nil {
		return err
	}
	if err := addRejects(top, d); err != nil {
		return err
	}

	bottom, err := baselinePanel(fmt.Sprintf("plain baseline: fixed semaphore of %d, per-worker backoff", p.shiftMax), b,
		func(pl *plot.Plot) error { return addStepLimit(pl, b) })
	if err != nil {
		return err
	}
	return saveTwo(path, top, bottom, xmax, float64(p.shiftMax)+2)
}

func limitsText(limits []int) string {
	parts := make([]string, len(limits))
	for i, l := range limits {
		parts[i] = fmt.Sprint(l)
	}
	return strings.Join(parts, " → ")
}
