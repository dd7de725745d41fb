package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
)

// figure is one line of the table `make bench` ends with: what was
// measured, its value, the reference it was measured against side by side
// in the same run (if any), their ratio, the target, and whether it was met.
type figure struct {
	Name, Value, Reference, Ratio, Target string
	OK                                    bool
}

var figures struct {
	sync.Mutex
	list []figure
}

// record adds a figure to the table.
func record(f figure) {
	figures.Lock()
	defer figures.Unlock()
	figures.list = append(figures.list, f)
}

// msText formats milliseconds.
func msText(v float64) string { return fmt.Sprintf("%.1f ms", v) }

// ratioText formats a ratio.
func ratioText(v float64) string { return fmt.Sprintf("%.2f", v) }

// printFigures writes the table to stdout and, when MANIFOLD_BENCH_TABLE
// names a file, as Markdown there (the README's performance section is
// made from it).
func printFigures() {
	figures.Lock()
	defer figures.Unlock()
	if len(figures.list) == 0 {
		return
	}
	okText := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "name\tvalue\treference\tratio\ttarget\tok")
	for _, f := range figures.list {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Name, f.Value, dash(f.Reference), dash(f.Ratio), f.Target, okText(f.OK))
	}
	w.Flush()
	path := os.Getenv("MANIFOLD_BENCH_TABLE")
	if path == "" {
		return
	}
	var b strings.Builder
	b.WriteString("| figure | value | reference (same run) | ratio | target | met |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, f := range figures.list {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", f.Name, f.Value, dash(f.Reference), dash(f.Ratio), f.Target, okText(f.OK))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "write the bench table:", err)
	}
}

func dash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

var _ = io.Discard
