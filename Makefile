# Manifold. `make run` starts the portal on :8080; `make test` runs every test on the real stack.
SHELL := /bin/bash
export PATH := $(CURDIR)/bin:$(PATH)

.PHONY: run test setup build generate check bench clean fuzz image screenshots

run:
	bash scripts/run.sh

setup:
	bash scripts/setup.sh

build:
	go build -o bin/manifold ./cmd/manifold

# image builds Manifold's own images through Manifold's API and loads them into the Docker engine (DOCKER_HOST).
image: setup
	bash scripts/image.sh

generate:
	go tool templ generate

# check fails when generated code is stale, code is not gofmt'ed, or vet complains.
check:
	@before=$$(cat $$(find . -name '*_templ.go' -not -path './bin/*' | sort) | sha256sum); \
	go tool templ generate >/dev/null 2>&1 || { go tool templ generate; exit 1; }; \
	after=$$(cat $$(find . -name '*_templ.go' -not -path './bin/*' | sort) | sha256sum); \
	[ "$$before" = "$$after" ] || { echo "generated templ code was stale; run make generate and commit it"; exit 1; }
	@test -z "$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*'))" || { echo "gofmt needed:"; gofmt -l $$(find . -name '*.go' -not -path './bin/*'); exit 1; }
	go vet ./...

test: setup check
	go test -count=1 -timeout 25m ./...
	$(MAKE) fuzz

# fuzz runs each parser's fuzz test (name:package:executions) for a bounded number of executions,
# about 8 s each here; the corpus is in <package>/testdata/fuzz. Counts, not a duration: with a
# duration, Go 1.26's fuzz coordinator can report "context deadline exceeded" at the deadline
# when a worker is still mid-call (go.dev/issue/75804, fixed in Go 1.27), failing a run that
# found nothing. FUZZSCALE multiplies every count (FUZZSCALE=10 fuzzes ten times longer).
FUZZSCALE ?= 1
fuzz:
	@for fp in FuzzParsePlatforms:./builds:15000 FuzzContextArchive:./builds:2500 FuzzManifestDecoding:./builds/content:20000 \
		FuzzGitSource:./builds:12000 FuzzParseHost:./outbound:40000; do \
		f=$${fp%%:*}; rest=$${fp#*:}; pkg=$${rest%%:*}; n=$$(( $${rest#*:} * $(FUZZSCALE) )); \
		go test -run '^$$' -fuzz "^$$f\$$" -fuzztime $${n}x -fuzzminimizetime 200x $$pkg || exit 1; \
	done

# bench runs every benchmark, prints one table of figures (each beside the
# reference it is measured against in the same run) and puts it in the README.
bench: setup
	MANIFOLD_BENCH_TABLE=$(CURDIR)/bench.md go test -run '^$$' -bench . -benchtime 1x -timeout 30m ./cmd/manifold/
	bash scripts/bench-readme.sh bench.md README.md

# screenshots runs the page tests in Chromium and copies their pictures to docs/screenshots/ (for the README).
screenshots: setup
	MANIFOLD_DOCS_SCREENSHOTS=1 go test -count=1 -run 'TestBrowserHistoryFiltersAndTrends|TestBrowserCompareAndBreadcrumbs' ./cmd/manifold/

clean:
	rm -rf bin data
