package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"manifold/builds"
)

// BenchmarkExampleBuild compares the warm example build through Manifold's API
// with `buildctl build` of the same Dockerfile and platforms to an OCI tar, on
// the same buildkitd, measured alternately. `make bench` runs it.
func BenchmarkExampleBuild(b *testing.B) {
	a := startApp(b, "", "--buildkit", env.Addr())
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(example), 0o644); err != nil {
		b.Fatal(err)
	}
	buildctl := func() time.Duration {
		start := time.Now()
		out, err := exec.Command(filepath.Join(env.Bin, "buildctl"), "--addr", env.Addr(), "build",
			"--frontend", "dockerfile.v0", "--local", "context="+dir, "--local", "dockerfile="+dir,
			"--opt", "platform=linux/amd64,linux/arm64",
			"--output", "type=oci,dest="+filepath.Join(dir, "out.tar")).CombinedOutput()
		if err != nil {
			b.Fatalf("buildctl: %v\n%s", err, out)
		}
		return time.Since(start)
	}
	manifold := func() (api, wall time.Duration) {
		start := time.Now()
		id := a.startBuild(b, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64", "linux/arm64"}})
		bd := a.waitEvery(b, id, 2*time.Millisecond)
		wall = time.Since(start)
		if bd.Status != builds.StatusSucceeded {
			b.Fatalf("build %s: %s", bd.Status, bd.Error)
		}
		return bd.FinishedAt.Sub(bd.CreatedAt), wall
	}
	// Warm both paths once.
	buildctl()
	manifold()

	const rounds = 15
	var bk, api, wall []time.Duration
	b.ResetTimer()
	for range b.N {
		for range rounds {
			bk = append(bk, buildctl())
			x, w := manifold()
			api, wall = append(api, x), append(wall, w)
		}
	}
	b.StopTimer()
	med := func(d []time.Duration) time.Duration { s := slices.Clone(d); slices.Sort(s); return s[len(s)/2] }
	ratio := float64(med(api)) / float64(med(bk))
	fmt.Printf("\nwarm example build, linux/amd64+linux/arm64, %d alternating rounds (medians)\n", len(bk))
	fmt.Printf("  buildctl build → OCI tar (whole process)          %8.1f ms\n", ms(med(bk)))
	fmt.Printf("  Manifold API, created_at → finished_at (from API) %8.1f ms   ratio %.2f (target ≤ 1.15)\n", ms(med(api)), ratio)
	fmt.Printf("  Manifold API, POST → status seen succeeded        %8.1f ms   ratio %.2f\n\n", ms(med(wall)), float64(med(wall))/float64(med(bk)))
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(ms(med(api)), "manifold-ms")
	b.ReportMetric(ms(med(bk)), "buildctl-ms")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
