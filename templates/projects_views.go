package templates

import (
	"strings"
	"time"

	"manifold/builds"
	"manifold/builds/projects"
)

// ProjectForm is a project's settings as a form shows and sends them.
type ProjectForm struct {
	Name, GitURL, Branches, DockerfilePath, ContextDir string
	Platforms, BuildArgs, Tags                         string // one a line (build args K=V)
	Push                                               bool
}

// ProjectsView is the projects list with the form that creates one.
type ProjectsView struct {
	Projects []projects.Project
	Form     ProjectForm
	Error    string
}

// ProjectView is one project's page: settings, webhook URLs, its builds.
type ProjectView struct {
	Project projects.Project
	Form    ProjectForm
	// Hooks are the webhook URLs by forge, on the host the page was asked for.
	Hooks  [][2]string
	Builds []*builds.Build
	Error  string
	Now    time.Time
}

// defaultBranch is what "Build now" proposes: the filter itself when it is
// a plain name, else main.
func defaultBranch(glob string) string {
	if glob == "" || strings.ContainsAny(glob, "*?[") {
		return "main"
	}
	return glob
}
