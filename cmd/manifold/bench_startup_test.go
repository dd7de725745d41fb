package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"manifold/builds/buildkittest"
)

// BenchmarkStartup measures `manifold serve` with its embedded buildkitd as a
// process, from exec to /healthz answering 200 with the daemon's workers,
// on a new data folder and restarted on the same one; beside it, buildkitd
// alone from exec to `buildctl debug workers` answering (the floor: the
// embedded daemon is most of the wait). Target: under 2 s. `make bench` runs it.
func BenchmarkStartup(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "manifold")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	buildkitd, buildctl := filepath.Join(env.Bin, "buildkitd"), filepath.Join(env.Bin, "buildctl")
	wait := func(cmd *exec.Cmd, ready func() bool) time.Duration {
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for !ready() {
			if time.Since(start) > 60*time.Second {
				cmd.Process.Kill()
				cmd.Wait()
				b.Fatalf("%s did not become ready in 60 s", cmd.Path)
			}
			time.Sleep(5 * time.Millisecond)
		}
		d := time.Since(start)
		cmd.Process.Signal(syscall.SIGTERM)
		// buildkitd answers SIGTERM with status 1; manifold must stop cleanly.
		if err := cmd.Wait(); err != nil && filepath.Base(cmd.Path) == "manifold" {
			b.Fatalf("%s stopped with %v", cmd.Path, err)
		}
		return d
	}
	serve := func(data string) time.Duration {
		addr, err := buildkittest.FreePort()
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(bin, "serve", "--data", data, "--addr", addr, "--buildkitd-bin", buildkitd)
		cmd.Env = append(os.Environ(), "MANIFOLD_LOG_LEVEL=warn")
		return wait(cmd, func() bool {
			resp, err := http.Get("http://" + addr + "/healthz")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var h struct {
				BuildKit []struct {
					OK        bool     `json:"ok"`
					Platforms []string `json:"platforms"`
				} `json:"buildkit"`
			}
			return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&h) == nil && len(h.BuildKit) == 1 && h.BuildKit[0].OK && len(h.BuildKit[0].Platforms) > 0
		})
	}
	alone := func() time.Duration {
		dir, err := os.MkdirTemp("", "bk-startup")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		sock := "unix://" + filepath.Join(dir, "bk.sock")
		cfg := filepath.Join(dir, "buildkitd.toml")
		os.WriteFile(cfg, []byte("[worker.oci]\n  enabled = true\n[worker.containerd]\n  enabled = false\n"), 0o600)
		cmd := exec.Command(buildkitd, "--root", filepath.Join(dir, "root"), "--addr", sock, "--config", cfg)
		return wait(cmd, func() bool { return exec.Command(buildctl, "--addr", sock, "debug", "workers").Run() == nil })
	}
	const rounds = 5
	var fresh, again, bk []time.Duration
	b.ResetTimer()
	for range b.N {
		for range rounds {
			data := b.TempDir()
			fresh = append(fresh, serve(data))
			again = append(again, serve(data))
			bk = append(bk, alone())
		}
	}
	b.StopTimer()
	med := func(d []time.Duration) time.Duration { s := slices.Clone(d); slices.Sort(s); return s[len(s)/2] }
	fmt.Printf("\nstart-up, exec → ready, %d rounds (medians; target < 2 s for manifold serve)\n", len(fresh))
	fmt.Printf("  buildkitd alone → buildctl debug workers answers  %8.1f ms\n", ms(med(bk)))
	fmt.Printf("  manifold serve, new data folder → /healthz ok     %8.1f ms\n", ms(med(fresh)))
	fmt.Printf("  manifold serve, restart on it → /healthz ok       %8.1f ms\n\n", ms(med(again)))
	b.ReportMetric(ms(med(fresh)), "fresh-ms")
	b.ReportMetric(ms(med(again)), "restart-ms")
	b.ReportMetric(ms(med(bk)), "buildkitd-ms")
	record(figure{Name: "start-up of manifold serve with its embedded buildkitd, new data folder, vs buildkitd alone", Value: msText(ms(med(fresh))),
		Reference: msText(ms(med(bk))), Ratio: ratioText(float64(med(fresh)) / float64(med(bk))), Target: "< 2 s", OK: med(fresh) < 2*time.Second})
	record(figure{Name: "start-up of manifold serve, restart on its data folder", Value: msText(ms(med(again))), Target: "< 2 s", OK: med(again) < 2*time.Second})
}
