package builds

import (
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// StageNames lists the named stages (FROM … AS name) of a Dockerfile, in order.
func StageNames(dockerfile string) []string {
	res, err := parser.Parse(strings.NewReader(dockerfile))
	if err != nil {
		return nil
	}
	var names []string
	for _, n := range res.AST.Children {
		if !strings.EqualFold(n.Value, "from") {
			continue
		}
		// FROM image AS name: the words follow as a chain of Next nodes.
		var words []string
		for w := n.Next; w != nil; w = w.Next {
			words = append(words, w.Value)
		}
		if len(words) == 3 && strings.EqualFold(words[1], "as") {
			names = append(names, words[2])
		}
	}
	return names
}
