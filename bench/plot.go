package bench

import (
	"errors"
	"fmt"
	"image/color"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// PlotCDF draws the latency CDF of every result that has a histogram, one
// line each, on a log latency axis, to file (.svg, .png or .pdf).
func PlotCDF(file string, rs []*Result) error {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".svg", ".png", ".pdf":
	default:
		return fmt.Errorf("plot %s: want a .svg, .png or .pdf file", file)
	}
	p := plot.New()
	p.Title.Text = "latency CDF"
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "fraction of operations"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	p.Legend.Top = false
	p.Legend.Left = false
	lines := 0
	for _, r := range rs {
		h := r.Hist()
		if h == nil {
			continue
		}
		xs, ys := h.CDF()
		if len(xs) == 0 {
			continue
		}
		pts := make(plotter.XYs, len(xs))
		for i := range xs {
			pts[i].X, pts[i].Y = max(xs[i], 0.001), ys[i]
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", r.Scenario, err)
		}
		l.Color = palette[lines%len(palette)]
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(r.Scenario+" "+r.Target, l)
		lines++
	}
	if lines == 0 {
		return errors.New("plot: no latency distribution to draw")
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, file)
}

var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xd6, 0x27, 0x28, 0xff},
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff},
	color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff},
}
