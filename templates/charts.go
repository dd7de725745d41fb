package templates

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"manifold/builds/explore"
)

// Chart is one server-drawn SVG line chart: a series per platform, a point
// per build, in a 640×240 view box; the page also shows its data as a table.
type Chart struct {
	ID, Title, Desc string
	Series          []ChartSeries
	YTicks          []ChartTick
	Jumps           []ChartJump
	Empty           bool
}

// ChartSeries is one line: a platform (or "all platforms").
type ChartSeries struct {
	Name   string
	Class  string // series-0, series-1, … coloured by app.css for light and dark
	Path   string // the polyline's points
	Points []ChartPoint
}

// ChartPoint is one build on one line.
type ChartPoint struct {
	X, Y    float64
	BuildID string
	Label   string
}

// ChartTick is a labelled value on the y axis.
type ChartTick struct {
	Y     float64
	Label string
}

// ChartJump marks a sudden image-size change, linking to the comparison.
type ChartJump struct {
	X, Y  float64
	Href  string
	Label string
}

// Chart geometry: the plot area inside the view box.
const (
	chartW, chartH             = 640.0, 240.0
	chartLeft, chartRight      = 84.0, 16.0
	chartTop, chartBottom      = 16.0, 28.0
	chartPlotW, chartPlotH     = chartW - chartLeft - chartRight, chartH - chartTop - chartBottom
	chartMaxSeries         int = 6
)

// TrendsView is the trends page.
type TrendsView struct {
	Trend                   explore.Trend
	Duration, Size, Cache   Chart
	HistoryURL, LatestBuild string
}

// NewTrendsView lays out the three charts of a trend.
func NewTrendsView(t explore.Trend) TrendsView {
	v := TrendsView{Trend: t, HistoryURL: "/builds?tag=" + url.QueryEscape(t.Tag)}
	v.Duration = trendChart("duration", "Duration per platform", t, func(b explore.TrendBuild, p string) (float64, bool) {
		pt, ok := b.Platforms[p]
		return pt.DurationSeconds, ok && pt.DurationSeconds > 0
	}, func(x float64) string {
		if x == 0 {
			return "0 s"
		}
		return HumanDuration(time.Duration(x * float64(time.Second)))
	})
	v.Size = trendChart("size", "Image size per platform (compressed)", t, func(b explore.TrendBuild, p string) (float64, bool) {
		pt, ok := b.Platforms[p]
		return float64(pt.ImageSize), ok && pt.ImageSize > 0
	}, func(x float64) string { return HumanBytes(int64(x)) })
	cache := explore.Trend{Tag: t.Tag, Platforms: []string{"all platforms"}, Builds: t.Builds}
	v.Cache = trendChart("cache", "Cache hits (share of steps)", cache, func(b explore.TrendBuild, _ string) (float64, bool) {
		return b.CachePercent, b.CachePercent >= 0
	}, func(x float64) string { return fmt.Sprintf("%.0f %%", x) })
	// Jumps on the size chart link to the comparison of the two builds.
	for _, j := range t.Jumps {
		for _, s := range v.Size.Series {
			if s.Name != j.Platform {
				continue
			}
			for _, pt := range s.Points {
				if pt.BuildID == j.To {
					v.Size.Jumps = append(v.Size.Jumps, ChartJump{X: pt.X, Y: pt.Y, Href: "/compare?a=" + j.From + "&b=" + j.To,
						Label: fmt.Sprintf("%s: %s → %s, compare %s with %s", j.Platform, HumanBytes(j.FromSize), HumanBytes(j.ToSize), j.From, j.To)})
				}
			}
		}
	}
	return v
}

func trendChart(id, title string, t explore.Trend, value func(explore.TrendBuild, string) (float64, bool), label func(float64) string) Chart {
	c := Chart{ID: id, Title: title}
	top := 0.0
	for _, b := range t.Builds {
		for _, p := range t.Platforms {
			if y, ok := value(b, p); ok {
				top = math.Max(top, y)
			}
		}
	}
	if top == 0 {
		c.Empty = true
		top = 1
	}
	top = niceCeil(top)
	if id == "cache" {
		top = 100 // a share: always the whole scale
	}
	for i := 0; i <= 4; i++ {
		val := top * float64(i) / 4
		c.YTicks = append(c.YTicks, ChartTick{Y: chartTop + chartPlotH*(1-val/top), Label: label(val)})
	}
	n := len(t.Builds)
	x := func(i int) float64 {
		if n <= 1 {
			return chartLeft + chartPlotW/2
		}
		return chartLeft + chartPlotW*float64(i)/float64(n-1)
	}
	var desc []string
	for si, p := range t.Platforms {
		s := ChartSeries{Name: p, Class: fmt.Sprintf("series-%d", si%chartMaxSeries)}
		var pts []string
		for i, b := range t.Builds {
			y, ok := value(b, p)
			if !ok {
				continue
			}
			pt := ChartPoint{X: x(i), Y: chartTop + chartPlotH*(1-y/top), BuildID: b.ID,
				Label: fmt.Sprintf("%s, build %s (%s): %s", p, b.ID, b.Status, label(y))}
			s.Points = append(s.Points, pt)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", pt.X, pt.Y))
		}
		s.Path = strings.Join(pts, " ")
		if len(s.Points) > 0 {
			first, last := s.Points[0], s.Points[len(s.Points)-1]
			desc = append(desc, fmt.Sprintf("%s: %d builds, from %s to %s", p, len(s.Points), labelOf(first), labelOf(last)))
		}
		c.Series = append(c.Series, s)
	}
	c.Desc = title + ", oldest build on the left. " + strings.Join(desc, "; ") + "."
	return c
}

func labelOf(p ChartPoint) string {
	_, v, _ := strings.Cut(p.Label, "): ")
	return v
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten, so ticks read well.
func niceCeil(x float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if x <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// ChartViewBox is the charts' SVG view box.
const ChartViewBox = "0 0 640 240"

// Px formats an SVG coordinate.
func Px(f float64) string { return fmt.Sprintf("%.1f", f) }

// ChartAxisY and ChartAxisX are where the axes lie.
var (
	ChartAxisLeft   = Px(chartLeft)
	ChartAxisRight  = Px(chartW - chartRight)
	ChartAxisBottom = Px(chartTop + chartPlotH)
	ChartLabelX     = Px(chartLeft - 6)
)

// ShortID is a build id's last eight characters (its random part), enough to tell builds apart in a sentence.
func ShortID(id string) string {
	if len(id) <= 8 {
		return id
	}
	return "…" + id[len(id)-8:]
}
