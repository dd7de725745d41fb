package templates

import (
	"regexp"
	"strconv"
	"strings"
)

// Segment is a run of log text with the CSS class of its ANSI colour.
type Segment struct {
	Class string
	Text  string
}

var ansiSeq = regexp.MustCompile("\x1b\\[([0-9;]*)([A-Za-z])")

// ANSISegments turns a log line's ANSI SGR colour codes into classed runs of
// text; every other escape sequence is dropped, so no raw control bytes reach
// the page. The text itself is escaped by templ when rendered.
func ANSISegments(line string) []Segment {
	var out []Segment
	fg, bold := 0, false
	class := func() string {
		var c []string
		if fg != 0 {
			c = append(c, "ansi-"+strconv.Itoa(fg))
		}
		if bold {
			c = append(c, "ansi-bold")
		}
		return strings.Join(c, " ")
	}
	emit := func(s string) {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 && r != '\t' || r == 0x7f {
				return -1
			}
			return r
		}, s)
		if s != "" {
			out = append(out, Segment{Class: class(), Text: s})
		}
	}
	rest := line
	for {
		loc := ansiSeq.FindStringSubmatchIndex(rest)
		if loc == nil {
			emit(rest)
			return out
		}
		emit(rest[:loc[0]])
		if rest[loc[4]:loc[5]] == "m" {
			params := rest[loc[2]:loc[3]]
			if params == "" {
				params = "0"
			}
			for _, p := range strings.Split(params, ";") {
				n, _ := strconv.Atoi(p)
				switch {
				case n == 0:
					fg, bold = 0, false
				case n == 1:
					bold = true
				case n == 22:
					bold = false
				case n == 39:
					fg = 0
				case (n >= 30 && n <= 37) || (n >= 90 && n <= 97):
					fg = n
				}
			}
		}
		rest = rest[loc[1]:]
	}
}

// LogLines splits a log into lines.
func LogLines(log string) []string {
	return strings.Split(strings.TrimSuffix(log, "\n"), "\n")
}
