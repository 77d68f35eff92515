// dockerfilecheck parses a Dockerfile with BuildKit's own Dockerfile frontend (the parser and
// instruction decoder that `docker build` uses), offline, and runs BuildKit's Dockerfile lint
// rules. It fails on a parse error, an invalid instruction or flag, an unknown stage in
// COPY --from, or any lint warning. No Docker engine is needed.
//
//	dockerfilecheck docker/Dockerfile
package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: dockerfilecheck DOCKERFILE")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	var problems []string
	lint := linter.New(&linter.Config{
		Warn: func(rule, description, url, msg string, location []parser.Range) {
			line := 0
			if len(location) > 0 {
				line = location[0].Start.Line
			}
			problems = append(problems, fmt.Sprintf("line %d: %s: %s", line, rule, msg))
		},
	})
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		fail(err)
	}
	for _, w := range res.Warnings {
		problems = append(problems, fmt.Sprintf("line %d: %s", w.Location.Start.Line, w.Short))
	}
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		fail(err)
	}
	names := map[string]bool{}
	for i, st := range stages {
		for _, cmd := range st.Commands {
			if c, ok := cmd.(*instructions.CopyCommand); ok && c.From != "" {
				if !names[strings.ToLower(c.From)] {
					problems = append(problems, fmt.Sprintf("stage %d: COPY --from=%s names no earlier stage", i, c.From))
				}
			}
		}
		if st.Name != "" {
			names[strings.ToLower(st.Name)] = true
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "dockerfilecheck: "+p)
		}
		os.Exit(1)
	}
	var desc []string
	for _, st := range stages {
		desc = append(desc, fmt.Sprintf("%s (FROM %s, %d instructions)", st.Name, st.BaseName, len(st.Commands)))
	}
	fmt.Printf("dockerfilecheck: %s: %d stages valid: %s\n", os.Args[1], len(stages), strings.Join(desc, "; "))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "dockerfilecheck:", err)
	os.Exit(1)
}
