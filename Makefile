# meshrev — `make help` lists the targets.
SHELL := /usr/bin/env bash
GO ?= go
BIN := $(CURDIR)/bin
export GOTOOLCHAIN ?= local

.DEFAULT_GOAL := help

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build meshrev-manager and meshrev (kubectl-meshrev too) into bin/, stamped with VERSION (make version)
	$(GO) build -ldflags "$(VERSION_LDFLAGS)" -o $(BIN)/meshrev-manager ./cmd/meshrev-manager
	$(GO) build -ldflags "$(VERSION_LDFLAGS)" -o $(BIN)/meshrev ./cmd/meshrev
	ln -sf meshrev $(BIN)/kubectl-meshrev

generate: ## Regenerate deepcopy and the Mesh CRD (controller-gen, pinned in go.mod)
	$(GO) tool controller-gen object:headerFile=hack/boilerplate.go.txt paths=./revisions/v1alpha1/... \
		crd:crdVersions=v1 output:crd:artifacts:config=charts/meshrev/crds

verify-generated: generate ## Fail when generated files are not current
	@out=$$(git status --porcelain -- revisions/v1alpha1 charts/meshrev/crds); [ -z "$$out" ] || \
		{ git diff -- revisions/v1alpha1 charts/meshrev/crds; echo "$$out"; \
		  echo "generated files are stale or new: run 'make generate' and commit the result"; exit 1; }

vet: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "not gofmt'ed: $$out"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/...

test-unit: ## Unit, golden and fuzz-seed tests (no cluster)
	$(GO) test -count=1 -timeout 30m ./...

bench: ## Benchmarks of the admission hot path (figures go to BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./webhook/

test: verify-generated vet test-unit test-compat test-e2e test-faults chart-lint test-demo ## Everything: generated files, vet, unit, golden and fuzz seeds, the compatibility suite against Istio, e2e and the fault suite on the local cluster, the demo

include hack/*.mk

.PHONY: help build generate verify-generated vet test-unit bench test
