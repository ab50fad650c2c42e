# Release artefacts (issue 15): the manager image, the packaged chart, the
# kubectl plugin. Included by the top-level Makefile. Nothing here needs a
# container daemon or the network, except release-push.
#
# One version for everything (the binaries' --version, meshrev_build_info,
# the image tag, the chart's version and appVersion, the krew manifest):
# VERSION, by default from git (hack/release/version.sh). SOURCE_DATE_EPOCH,
# the commit time, is every timestamp, so two builds of a commit are the same
# bytes.

DIST ?= $(CURDIR)/dist
IMAGE_REPOSITORY ?= ghcr.io/meshrev/meshrev-manager
CHART_REPOSITORY ?= oci://ghcr.io/meshrev/charts
HELM ?= helm

ifeq ($(origin VERSION),undefined)
VERSION := $(shell hack/release/version.sh 2>/dev/null || echo 0.0.0-dev-unknown)
endif
ifeq ($(origin GIT_REVISION),undefined)
GIT_REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
endif
ifeq ($(origin SOURCE_DATE_EPOCH),undefined)
SOURCE_DATE_EPOCH := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
endif
export SOURCE_DATE_EPOCH

# VERSION_LDFLAGS stamp the version into a binary (make build uses them too).
VERSION_LDFLAGS := -X github.com/meshrev/meshrev/internal/version.Version=$(VERSION) \
	-X github.com/meshrev/meshrev/internal/version.Revision=$(GIT_REVISION)
RELEASE := $(GO) run ./hack/release
RELEASE_FLAGS = --version=$(VERSION) --revision=$(GIT_REVISION) --source-date-epoch=$(SOURCE_DATE_EPOCH)

.PHONY: version image chart-package cli-dist release release-push test-release

version: ## Print the version make stamps into the binaries, the image and the chart
	@echo $(VERSION)

image: ## The manager image for linux/amd64+arm64 as an OCI layout in dist/image, its repo:tag@digest in dist/image.ref (no daemon, no network)
	@mkdir -p $(DIST)
	$(RELEASE) image $(RELEASE_FLAGS) --repository=$(IMAGE_REPOSITORY) --out=$(DIST)/image --ref-file=$(DIST)/image.ref

chart-package: image ## helm package the chart into dist/ with version and appVersion stamped; fails unless it defaults to dist/image.ref
	$(RELEASE) chart $(RELEASE_FLAGS) --chart=charts/meshrev --out=$(DIST) --image-ref-file=$(DIST)/image.ref

cli-dist: ## kubectl-meshrev archives for linux/darwin x amd64/arm64 in dist/
	$(RELEASE) cli $(RELEASE_FLAGS) --out=$(DIST)

release: image chart-package cli-dist ## Everything of a release in dist/: image, chart, CLI archives, checksums.txt, krew manifest, RELEASE_NOTES.md (pushes nothing)
	$(RELEASE) krew $(RELEASE_FLAGS) --dist=$(DIST)
	@echo "release $(VERSION) in $(DIST):"; ls -1 $(DIST)

release-push: ## Push dist/'s image to IMAGE_REPOSITORY:VERSION and its chart to CHART_REPOSITORY (CI; credentials from REGISTRY_USERNAME/REGISTRY_PASSWORD)
	$(RELEASE) push --layout=$(DIST)/image --ref=$(IMAGE_REPOSITORY):$(VERSION)
	$(HELM) push $(DIST)/meshrev-$(VERSION).tgz $(CHART_REPOSITORY)

test-release: ## The release tooling's tests: builds the image twice (both platforms), runs its binary, checks chart, archives, krew manifest
	$(GO) test -count=1 ./hack/release/ ./internal/version/
