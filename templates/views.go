// Package templates holds the templ pages and partials, each taking a view model.
package templates

import (
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"manifold/builds"
	"manifold/builds/accounts"
	"manifold/builds/builder"
	"manifold/builds/content"
	"manifold/builds/registry"

	"github.com/a-h/templ"
)

// ExampleDockerfile is the example every user tries first; the new-build form starts with it.
const ExampleDockerfile = `FROM busybox:1
LABEL description="Image for my Docker course"
CMD [ "/bin/sh", "-c", "while date; do sleep 1; done;" ]
`

// PlatformChoice is one checkbox of the new-build form.
type PlatformChoice struct {
	Name    string
	Checked bool
}

// NewBuildView is the new-build form, empty or re-shown with the user's input and a message.
type NewBuildView struct {
	Dockerfile string
	Platforms  []PlatformChoice
	Error      string
	// Unreachable is set when no BuildKit node answered, with what was said.
	Unreachable string

	BuildArgs string // KEY=VALUE, one a line
	Labels    string // KEY=VALUE, one a line
	Target    string
	NoCache   bool
	// Placement is the placement policy: prefer-native (default), native-only or any.
	Placement      string
	DockerfilePath string
	GitURL         string
	GitRef         string
	GitSubdir      string
	// ContextFrom is the build whose uploaded context an edited rebuild reuses.
	ContextFrom     string
	ContextFromInfo string
	Secrets         string // secret names, space separated
}

// LoginView is the login form.
type LoginView struct {
	Name, Next, Error string
}

// AccountView is the user's own page: tokens and secrets.
type AccountView struct {
	User, Role string
	Tokens     []accounts.Token
	NewToken   string // shown once, right after it was made
	Error      string
	Secrets    []string
	// Builder says the builder endpoint is on and the user may build
	// through it; Certs are their certificates, BuilderAddr where buildx
	// reaches the endpoint, NewCert one just made (shown once).
	Builder     bool
	Certs       []builder.Issued
	BuilderAddr string
	NewCert     *NewBuilderCert
}

// NewBuilderCert is a builder certificate's files, shown once when it is made.
type NewBuilderCert struct {
	Serial        string
	ExpiresAt     time.Time
	CA, Cert, Key string
}

// PEMDownload is a data: URL that saves a PEM file from the page.
func PEMDownload(pem string) templ.SafeURL {
	return templ.SafeURL("data:application/x-pem-file;base64," + base64.StdEncoding.EncodeToString([]byte(pem)))
}

// BuildxCreate is the command that adds the endpoint as a buildx builder,
// with the certificate files in the current folder.
func BuildxCreate(addr string) string {
	return "docker buildx create --name team --driver remote --driver-opt cacert=$PWD/ca.pem,cert=$PWD/cert.pem,key=$PWD/key.pem tcp://" + addr
}

// UsersView is the admins' user list.
type UsersView struct {
	Users  []accounts.User
	Tokens []accounts.Token
	Error  string
}

// AuditView is a page of the audit log.
type AuditView struct {
	Entries []accounts.AuditEntry
	Next    string
}

// BuildsView is a page of the build history.
type BuildsView struct {
	Builds []*builds.Build
	// Next is the id to pass as before= for the next (older) page, or "".
	Next string
	Now  time.Time
	// Filter is what the URL asked for; Platforms the choices the filter form offers.
	Filter    builds.Filter
	Platforms []string
}

// NextURL is the link to the next (older) page, keeping the filter.
func (v BuildsView) NextURL() string {
	u := "/builds?before=" + v.Next
	if f := v.Filter.String(); f != "" {
		u += "&" + f
	}
	return u
}

// FilterDate shows a filter time in a date-time input ("" when unset).
func FilterDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04")
}

// HistoryStatuses are the statuses the history filter offers.
var HistoryStatuses = []string{"queued", "running", "succeeded", "failed", "canceled", "interrupted"}

// BuildView is one build's page.
type BuildView struct {
	Build *builds.Build
	// StepLogs are the log viewer's steps; LastSeq is the last event shown,
	// where a live page's event stream picks up.
	StepLogs      []StepLogView
	LastSeq       int64
	QueuePosition int
	Now           time.Time
	// DockerfileLines is the inline Dockerfile, numbered, with the failing line marked.
	DockerfileLines []DockerfileLine
	// FailedOutput is the last lines the failing step printed.
	FailedOutput []string
	Warnings     []builds.WarningEvent
	// Downloads are the archives a succeeded build offers.
	Downloads []content.ArchiveSum
	// Pulls are the docker pull lines for the build's image through /v2/;
	// Copies the skopeo lines that copy it out.
	Pulls, Copies []string
	// Timeline, Emulation and Advice picture where the time went (nil when
	// there is nothing to show); Buildx is the same build from a shell.
	Timeline  *Timeline
	Emulation *Emulation
	Advice    *Advice
	Buildx    string
}

// StepLogView is one step of the log viewer: its line count, whether it is
// open (running or failed), and its lines when they come with the page
// (Lazy: the page loads them when the step is opened).
type StepLogView struct {
	Step  builds.Step
	Count int
	Open  bool
	Lazy  bool
	Lines []builds.LogLine
}

// StepState is a step's outcome as the plain log says it.
func StepState(s builds.Step) string {
	switch {
	case s.Error != "":
		return "ERROR"
	case s.Cached:
		return "CACHED"
	case s.FinishedAt != nil && s.StartedAt != nil:
		return "DONE " + HumanDuration(s.FinishedAt.Sub(*s.StartedAt))
	case s.FinishedAt != nil:
		return "DONE"
	case s.StartedAt != nil:
		return "running"
	}
	return "waiting"
}

// LiveAttr is the aria-live value of a region that changes while a build runs.
func LiveAttr(live bool) string {
	if live {
		return "polite"
	}
	return "off"
}

// CopyCommands are skopeo lines that copy a succeeded build's image out of
// Manifold's pull API: the whole index into an OCI archive, and to a registry.
func CopyCommands(host string, b *builds.Build) []string {
	src := "docker://" + host + "/" + registry.BuildsRepo + ":" + b.ID
	return []string{
		"skopeo copy --all --src-tls-verify=false " + src + " oci-archive:" + b.ID + ".oci.tar",
		"skopeo copy --all --src-tls-verify=false " + src + " docker://registry.example.com/team/app:tag",
	}
}

// PullCommands are the exact `docker pull` lines for a succeeded build
// through Manifold's pull API at host: by id, and under each tag's name
// (registry host first, a port joined with '_').
func PullCommands(host string, b *builds.Build) []string {
	out := []string{"docker pull " + host + "/" + registry.BuildsRepo + ":" + b.ID}
	tags, err := builds.ParseTags(b.Tags)
	if err != nil {
		return out
	}
	for _, t := range tags {
		out = append(out, "docker pull "+host+"/"+t.PullName()+":"+t.Tag)
	}
	return out
}

// StorageView is the disk-use page.
type StorageView struct {
	Usage content.Usage
}

// DownloadLabel names a download for people.
func DownloadLabel(a content.ArchiveSum) string {
	what := "OCI archive, every platform"
	if a.Platform != "" {
		what = "OCI archive, " + a.Platform
	}
	if a.Format == content.FormatDocker {
		what = "docker load tarball, " + a.Platform
	}
	return what
}

// BarWidth scales n of max into a bar of at most width pixels.
func BarWidth(n, max int64, width int) string {
	if max <= 0 || n <= 0 {
		return "0"
	}
	return fmt.Sprintf("%.1f", float64(n)*float64(width)/float64(max))
}

// MaxBuildBytes is the largest build total, the scale of the storage bars.
func MaxBuildBytes(u content.Usage) int64 {
	var m int64
	for _, b := range u.Builds {
		m = max(m, b.TotalBytes)
	}
	return m
}

// DockerfileLine is one numbered line of a Dockerfile.
type DockerfileLine struct {
	N      int
	Text   string
	Marked bool
}

// ErrorView is the page shown for an error.
type ErrorView struct {
	Status  int
	Title   string
	Message string
}

// ShortDigest shortens "sha256:abcdef…" to its first 12 hex digits.
func ShortDigest(d string) string {
	_, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) < 12 {
		return d
	}
	return hex[:12]
}

// HumanBytes prints a size the way people read it.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// HumanDuration prints a duration rounded for reading: 0.4s, 12s, 3m05s.
func HumanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// Timestamp prints a time in UTC, to the second.
func Timestamp(t *time.Time) string {
	if t == nil {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// StepDuration is how long a step ran, or "" while it has not finished.
func StepDuration(s builds.Step) string {
	if s.StartedAt == nil || s.FinishedAt == nil {
		return ""
	}
	return HumanDuration(s.FinishedAt.Sub(*s.StartedAt))
}

// ContextSummary says in a few words where a build's context came from.
func ContextSummary(b *builds.Build) string {
	switch b.Context.Type {
	case "upload":
		return fmt.Sprintf("upload, %d entries, %s", b.Context.Files, HumanBytes(b.Context.Size))
	case "client":
		if b.DockerfilePath != "" {
			return "the client's folder (" + b.DockerfilePath + "), not kept by Manifold"
		}
		return "the client's folder, not kept by Manifold"
	case "git":
		if b.Git == nil {
			return "git"
		}
		s := b.Git.URL
		if b.Git.Ref != "" {
			s += " @ " + b.Git.Ref
		}
		if b.Git.Subdir != "" {
			s += " in " + b.Git.Subdir
		}
		return s
	}
	return "none (Dockerfile only)"
}

// KeyValues prints a map as sorted KEY=value pairs.
func KeyValues(m map[string]string) string {
	return strings.Join(KeyValueLines(m), "  ")
}

// KeyValueLines lists a map as sorted KEY=value lines.
func KeyValueLines(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + m[k]
	}
	return out
}

func lineNo(n int) string { return fmt.Sprintf("%4d  ", n) }

// EmulatedPlatforms are the node's platforms that it does not run natively.
func EmulatedPlatforms(n builds.NodeStatus) []string {
	var out []string
	for _, p := range n.Platforms {
		if !slices.Contains(n.Native, p) {
			out = append(out, p)
		}
	}
	return out
}
