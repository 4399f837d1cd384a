# skiff — see README.md. `make run` builds everything and starts skiff;
# `make test` runs the whole test suite (what CI runs).
SHELL   := /bin/bash
GO      ?= go
BUNDLES := _output/bundles
DISTS   := $(wildcard dist/kubernetes-*)
# One stamp per bundle module; a bundle is rebuilt only when its module changes.
STAMPS  := $(patsubst dist/%,$(BUNDLES)/.%.stamp,$(DISTS))
# Upstream's conformance suite per release (e2e.test, ginkgo, test images'
# programs); CI needs only the newest release's.
CONFORMANCE_STAMPS := $(patsubst dist/%,$(BUNDLES)/.conformance-%.stamp,$(DISTS))
CONFORMANCE_LATEST := $(lastword $(sort $(CONFORMANCE_STAMPS)))
DATA    ?= .data

.PHONY: all build skiff bundles images deps test unit e2e run demo bench bench-density bench-hibernate fmt clean conformance conformance-build conformance-busybox

all: build

build: skiff bundles images

skiff:
	$(GO) build -o bin/skiff ./cmd/skiff
	$(GO) build -o bin/skiff-instance ./cmd/skiff-instance

bundles: $(STAMPS)

# Sources of the system images skiff pushes into its registry at start:
# pause, the demo web app, and CoreDNS from its own module (images/coredns);
# and gVisor for the nodes' image (dist/gvisor; rebuilt when it changes).
GVISOR := _output/images/.gvisor.stamp
images: $(GVISOR)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o _output/images/pause ./images/pause
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o _output/images/web ./images/web
	cd images/coredns && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o ../../_output/images/coredns .

$(GVISOR): dist/gvisor/go.mod dist/gvisor/go.sum
	cd dist/gvisor && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o ../../_output/images/runsc gvisor.dev/gvisor/runsc
	cd dist/gvisor && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o ../../_output/images/containerd-shim-runsc-v1 gvisor.dev/gvisor/shim
	@touch $@

$(BUNDLES)/.%.stamp: dist/%/go.mod dist/%/go.sum dist/kubernetes-1.37/main.go hack/bundle.sh
	bash hack/bundle.sh dist/$* $(BUNDLES)
	@touch $@

# What running upstream's conformance suite needs, per release (see
# docs/conformance.md): e2e.test, ginkgo and the test images' programs.
conformance-build: $(CONFORMANCE_STAMPS) conformance-busybox

$(BUNDLES)/.conformance-%.stamp: dist/%/go.mod dist/%/go.sum dist/%/conformance_test.go hack/conformance-build.sh
	bash hack/conformance-build.sh dist/$* $(BUNDLES)
	@touch $@

# The busybox of the test images (behaves as upstream's busybox image).
conformance-busybox:
	@bash hack/busybox.sh _output/conformance

# Every [Conformance] test of every release against fresh skiff clusters
# (hours); the report lands in _output/conformance/report.
conformance: deps build conformance-build
	SKIFF_CONFORMANCE=full SKIFF_CONFORMANCE_REPORT=$(CURDIR)/_output/conformance/report \
		$(GO) test -count=1 -timeout 20h -run '^TestConformance$$' -v ./test/e2e/

# System packages the tests and nodes need (idempotent; apt only if something is missing).
deps:
	@bash hack/deps.sh

# The whole suite: unit tests and end-to-end tests against the real bundles
# and the stock kubectl / aws clients.
test: deps build $(CONFORMANCE_LATEST) conformance-busybox
	$(GO) test -count=1 -timeout 80m ./...

unit:
	$(GO) test -count=1 ./internal/... ./cmd/...

e2e: build
	$(GO) test -count=1 -timeout 60m -v ./test/e2e/

# The main job: skiff serving the EKS API with data in $(DATA).
run: deps build
	bin/skiff serve --data-dir $(DATA)

# A scripted tour: serve, create an HA cluster, use it with kubectl, delete it.
demo: deps build
	bash hack/demo.sh

# Benchmarks print ratios against a baseline measured in the same run.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 40m ./test/e2e/

# Density (issue 22): HA clusters created until DENSITY are ACTIVE (or
# memory runs short), then idle memory and CPU per control plane.
DENSITY ?= 100
bench-density: build
	SKIFF_DENSITY=$(DENSITY) $(GO) test -run '^$$' -bench '^BenchmarkDensity$$' -benchtime 1x -timeout 8h ./test/e2e/

# Hibernation (issue 22): HIBERNATED clusters created and hibernated one
# after another beside AWAKE awake ones, then memory at rest and a wake.
HIBERNATED ?= 1000
AWAKE ?= 50
bench-hibernate: build
	SKIFF_HIBERNATED=$(HIBERNATED) SKIFF_AWAKE=$(AWAKE) $(GO) test -run '^$$' -bench '^BenchmarkHibernate$$' -benchtime 1x -timeout 24h ./test/e2e/

fmt:
	gofmt -w cmd internal test dist

clean:
	rm -rf bin _output
