package explore

import (
	"encoding/json"
	"sort"
	"strings"
)

// Provenance is what an in-toto statement says of how an image was made, as
// far as Manifold reads it: SLSA provenance v0.2 and v1, and SPDX packages.
type Provenance struct {
	PredicateType string            `json:"predicate_type"`
	Subjects      []Material        `json:"subjects"`
	Builder       string            `json:"builder,omitempty"`
	BuildType     string            `json:"build_type,omitempty"`
	Frontend      string            `json:"frontend,omitempty"`
	Args          map[string]string `json:"args,omitempty"`
	Source        string            `json:"source,omitempty"`
	Materials     []Material        `json:"materials"`
	Packages      []Package         `json:"packages,omitempty"`
}

// Material is something the build used (a base image, a git checkout), by digest.
type Material struct {
	URI    string `json:"uri"`
	Digest string `json:"digest"`
}

// Package is one SBOM entry.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	License string `json:"license,omitempty"`
}

type digestSet map[string]string

func (d digestSet) String() string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		return k + ":" + d[k]
	}
	return ""
}

// ParseStatement reads an in-toto statement; unknown predicates keep only their type and subjects.
func ParseStatement(raw []byte) (*Provenance, error) {
	var st struct {
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Name   string    `json:"name"`
			Digest digestSet `json:"digest"`
		} `json:"subject"`
		Predicate json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, err
	}
	p := &Provenance{PredicateType: st.PredicateType, Subjects: []Material{}, Materials: []Material{}}
	for _, s := range st.Subject {
		p.Subjects = append(p.Subjects, Material{URI: s.Name, Digest: s.Digest.String()})
	}
	switch {
	case strings.HasPrefix(st.PredicateType, "https://slsa.dev/provenance/v0."):
		var pred struct {
			Builder    struct{ ID string } `json:"builder"`
			BuildType  string              `json:"buildType"`
			Invocation struct {
				ConfigSource struct {
					URI        string `json:"uri"`
					EntryPoint string `json:"entryPoint"`
				} `json:"configSource"`
				Parameters struct {
					Frontend string            `json:"frontend"`
					Args     map[string]string `json:"args"`
				} `json:"parameters"`
			} `json:"invocation"`
			Materials []struct {
				URI    string    `json:"uri"`
				Digest digestSet `json:"digest"`
			} `json:"materials"`
		}
		if err := json.Unmarshal(st.Predicate, &pred); err != nil {
			return p, nil
		}
		p.Builder, p.BuildType, p.Frontend, p.Args = pred.Builder.ID, pred.BuildType, pred.Invocation.Parameters.Frontend, pred.Invocation.Parameters.Args
		p.Source = strings.TrimSpace(pred.Invocation.ConfigSource.URI + " " + pred.Invocation.ConfigSource.EntryPoint)
		for _, m := range pred.Materials {
			p.Materials = append(p.Materials, Material{URI: m.URI, Digest: m.Digest.String()})
		}
	case strings.HasPrefix(st.PredicateType, "https://slsa.dev/provenance/v1"):
		var pred struct {
			BuildDefinition struct {
				BuildType          string `json:"buildType"`
				ExternalParameters struct {
					ConfigSource struct {
						URI  string `json:"uri"`
						Path string `json:"path"`
					} `json:"configSource"`
					Request struct {
						Frontend string            `json:"frontend"`
						Args     map[string]string `json:"args"`
					} `json:"request"`
				} `json:"externalParameters"`
				ResolvedDependencies []struct {
					URI    string    `json:"uri"`
					Digest digestSet `json:"digest"`
				} `json:"resolvedDependencies"`
			} `json:"buildDefinition"`
			RunDetails struct {
				Builder struct{ ID string } `json:"builder"`
			} `json:"runDetails"`
		}
		if err := json.Unmarshal(st.Predicate, &pred); err != nil {
			return p, nil
		}
		bd := pred.BuildDefinition
		p.Builder, p.BuildType = pred.RunDetails.Builder.ID, bd.BuildType
		p.Frontend, p.Args = bd.ExternalParameters.Request.Frontend, bd.ExternalParameters.Request.Args
		p.Source = strings.TrimSpace(bd.ExternalParameters.ConfigSource.URI + " " + bd.ExternalParameters.ConfigSource.Path)
		for _, m := range bd.ResolvedDependencies {
			p.Materials = append(p.Materials, Material{URI: m.URI, Digest: m.Digest.String()})
		}
	case strings.HasPrefix(st.PredicateType, "https://spdx.dev/Document"):
		var pred struct {
			Packages []struct {
				Name            string `json:"name"`
				VersionInfo     string `json:"versionInfo"`
				LicenseDeclared string `json:"licenseDeclared"`
			} `json:"packages"`
		}
		if err := json.Unmarshal(st.Predicate, &pred); err == nil {
			for _, pk := range pred.Packages {
				p.Packages = append(p.Packages, Package{Name: pk.Name, Version: pk.VersionInfo, License: pk.LicenseDeclared})
			}
		}
	}
	return p, nil
}
