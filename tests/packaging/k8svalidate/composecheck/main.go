// composecheck loads a Compose file with compose-go (the loader of `docker compose`), offline: the
// file is validated against the Compose specification's JSON schema, interpolated, merged (YAML
// anchors and merge keys) and normalized, as `docker compose config` would, and a few project rules
// are checked. Exit 0 when it loads and the rules hold.
//
//	composecheck docker/compose.yaml
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck COMPOSE_FILE")
		os.Exit(2)
	}
	file, _ := filepath.Abs(os.Args[1])
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithOsEnv,
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true))
	if err != nil {
		fail(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	var errs []string
	for name, svc := range project.Services {
		if svc.Image == "" && svc.Build == nil {
			errs = append(errs, name+": neither image nor build")
		}
		if svc.Build != nil {
			df := svc.Build.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(svc.Build.Context, df)
			}
			if _, err := os.Stat(df); err != nil {
				errs = append(errs, fmt.Sprintf("%s: build: %v", name, err))
			}
		}
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					errs = append(errs, fmt.Sprintf("%s: bind mount source: %v", name, err))
				}
			}
		}
		if strings.HasPrefix(svc.NetworkMode, "service:") {
			peer := strings.TrimPrefix(svc.NetworkMode, "service:")
			if _, ok := project.Services[peer]; !ok {
				errs = append(errs, fmt.Sprintf("%s: network_mode names unknown service %q", name, peer))
			}
			if len(svc.Ports) > 0 {
				errs = append(errs, name+": ports must be published on the network_mode peer")
			}
		}
		for dep := range svc.DependsOn {
			if _, ok := project.Services[dep]; !ok {
				errs = append(errs, fmt.Sprintf("%s: depends_on unknown service %q", name, dep))
			}
		}
	}
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(os.Stderr, "composecheck: "+e)
		}
		os.Exit(1)
	}
	fmt.Printf("composecheck: %s: %d services valid (%s)\n", filepath.Base(file), len(project.Services),
		strings.Join(project.ServiceNames(), ", "))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "composecheck:", err)
	os.Exit(1)
}
