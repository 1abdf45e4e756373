package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotScaleOut draws scenarios 9 and 10 (whichever ran): results/s by replica count, the
// daemon's and the baseline's (the mean of the rounds as a line, every round as a dot), with
// linear scaling from the daemon's 1-replica rate (9) or the bound limit/L (10) dashed.
func plotScaleOut(path string, unbound, shared []stepRuns, p params) error {
	var panels []*plot.Plot
	if len(unbound) > 0 {
		linear := meanRate(unbound[0].every[0])
		pl, err := scalePanel(fmt.Sprintf("scenario 9: each replica KOMBO_MAX_CONCURRENCY=%d, L=%s, Kombo's limit (%d) not binding",
			p.scaleMax, p.scaleLatency, unboundLimit(p)), unbound,
			func(n float64) float64 { return n * linear }, "linear: n × the daemon's 1-replica rate")
		if err != nil {
			return err
		}
		panels = append(panels, pl)
	}
	if len(shared) > 0 {
		bound := float64(p.sharedLimit) / p.scaleLatency.Seconds()
		pl, err := scalePanel(fmt.Sprintf("scenario 10: all replicas share one Kombo limit of %d, each KOMBO_MAX_CONCURRENCY=%d, L=%s",
			p.sharedLimit, p.scaleMax, p.scaleLatency), shared,
			func(float64) float64 { return bound }, fmt.Sprintf("the bound: %d / L", p.sharedLimit))
		if err != nil {
			return err
		}
		panels = append(panels, pl)
	}
	if len(panels) == 0 {
		return nil
	}
	return savePanels(path, panels...)
}

func meanRate(runs []*runResult) float64 {
	sum := 0.0
	for _, r := range runs {
		sum += r.perSecond()
	}
	return sum / float64(max(len(runs), 1))
}

// scalePanel is one panel of plotScaleOut; ref is the dashed reference by replica count.
func scalePanel(title string, steps []stepRuns, ref func(n float64) float64, refName string) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = title
	pl.X.Label.Text = "replicas"
	pl.Y.Label.Text = "results/s"
	pl.Add(plotter.NewGrid())
	var ticks []plot.Tick
	var refXY plotter.XYs
	ymax := 0.0
	for _, st := range steps {
		n := float64(st.every[0][0].spec.replicas)
		ticks = append(ticks, plot.Tick{Value: n, Label: fmt.Sprint(n)})
		refXY = append(refXY, plotter.XY{X: n, Y: ref(n)})
		ymax = max(ymax, ref(n))
	}
	refLine, err := plotter.NewLine(refXY)
	if err != nil {
		return nil, err
	}
	refLine.Color, refLine.Width, refLine.Dashes = grey, vg.Points(1.5), []vg.Length{vg.Points(4), vg.Points(3)}
	pl.Add(refLine)
	pl.Legend.Add(refName, refLine)
	for side, style := range []struct {
		name  string
		color color.Color
	}{{"integration-deleter", blue}, {"plain baseline", orange}} {
		var mean, every plotter.XYs
		for _, st := range steps {
			n := float64(st.every[side][0].spec.replicas)
			mean = append(mean, plotter.XY{X: n, Y: meanRate(st.every[side])})
			for _, r := range st.every[side] {
				every = append(every, plotter.XY{X: n, Y: r.perSecond()})
				ymax = max(ymax, r.perSecond())
			}
		}
		line, points, err := plotter.NewLinePoints(mean)
		if err != nil {
			return nil, err
		}
		line.Color, line.Width = style.color, vg.Points(2)
		points.Color, points.Shape, points.Radius = style.color, draw.CircleGlyph{}, vg.Points(3)
		dots, err := plotter.NewScatter(every)
		if err != nil {
			return nil, err
		}
		dots.Color, dots.Shape, dots.Radius = style.color, draw.RingGlyph{}, vg.Points(2)
		pl.Add(line, points, dots)
		pl.Legend.Add(style.name+": mean of the rounds (rings: each round)", line, points)
	}
	pl.Legend.Left = true
	pl.X.Tick.Marker = plot.ConstantTicks(ticks)
	pl.X.Min, pl.X.Max = 0.5, float64(len(steps))+0.5
	pl.Y.Min, pl.Y.Max = 0, 1.15*ymax
	return pl, nil
}
