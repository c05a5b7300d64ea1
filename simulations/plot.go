package simulations

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// WriteConvergencePlot writes an SVG scatter plot of steps-to-converge
// against the injected fault rate (faults per virtual minute), one dot per
// converged seed, with the median and maximum of each tenth of the seeds
// in fault-rate order.
func WriteConvergencePlot(out io.Writer, results []Result) error {
	type pt struct{ x, y float64 }
	var pts []pt
	for _, r := range results {
		if r.Converged {
			pts = append(pts, pt{r.FaultRate, float64(r.StepsToConverge)})
		}
	}
	if len(pts) == 0 {
		return fmt.Errorf("%w: no converged seed to plot", ErrConfig)
	}
	const (
		width, height          = 720.0, 440.0
		left, right, top, bott = 70.0, 20.0, 40.0, 60.0
	)
	xmax, ymax := 1.0, 1.0
	for _, p := range pts {
		xmax, ymax = math.Max(xmax, p.x), math.Max(ymax, p.y)
	}
	xmax, ymax = niceCeil(xmax), niceCeil(ymax)
	sx := func(x float64) float64 { return left + x/xmax*(width-left-right) }
	sy := func(y float64) float64 { return height - bott - y/ymax*(height-top-bott) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%g" y="22" font-size="14" text-anchor="middle">Steps to converge after healing, against fault rate (%d seeds)</text>`+"\n", width/2, len(pts))
	for i := 0; i <= 5; i++ {
		x := xmax * float64(i) / 5
		y := ymax * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", sx(x), sy(0), sx(x), sy(ymax))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", sx(0), sy(y), sx(xmax), sy(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", sx(x), sy(0)+18, trimNum(x))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", sx(0)-6, sy(y)+4, trimNum(y))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", sx(0), sy(0), sx(xmax), sy(0))
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", sx(0), sy(0), sx(0), sy(ymax))
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">injected faults per virtual minute (frame losses, duplications, reorderings, cuts, partitions, crashes, disk faults)</text>`+"\n", (left+width-right)/2, height-14)
	fmt.Fprintf(&b, `<text transform="translate(18 %g) rotate(-90)" text-anchor="middle">steps from heal to convergence</text>`+"\n", (top+height-bott)/2)
	for _, p := range pts {
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="#4a7ebb" fill-opacity="0.45"/>`+"\n", sx(p.x), sy(p.y))
	}
	// Median and maximum per bin of equal size, in fault-rate order, each
	// drawn at the bin's median fault rate.
	sorted := slices.Clone(pts)
	slices.SortStableFunc(sorted, func(a, b pt) int { return cmp.Compare(a.x, b.x) })
	bins := min(10, len(sorted))
	var med, mx []string
	for i := range bins {
		bin := sorted[i*len(sorted)/bins : (i+1)*len(sorted)/bins]
		xs := make([]float64, len(bin))
		ys := make([]float64, len(bin))
		for j, p := range bin {
			xs[j], ys[j] = p.x, p.y
		}
		slices.Sort(ys)
		cx := sx(xs[len(xs)/2])
		med = append(med, fmt.Sprintf("%.1f,%.1f", cx, sy(ys[len(ys)/2])))
		mx = append(mx, fmt.Sprintf("%.1f,%.1f", cx, sy(ys[len(ys)-1])))
	}
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#d62728" stroke-width="2"/>`+"\n", strings.Join(med, " "))
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#ff7f0e" stroke-width="1.5" stroke-dasharray="5,3"/>`+"\n", strings.Join(mx, " "))
	fmt.Fprintf(&b, `<text x="%g" y="%g" fill="#d62728">— median per tenth of the seeds</text>`+"\n", width-right-230, top+14)
	fmt.Fprintf(&b, `<text x="%g" y="%g" fill="#ff7f0e">- - maximum per tenth</text>`+"\n", width-right-230, top+30)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(out, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimNum(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
