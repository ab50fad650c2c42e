dev-up: ## Local cluster + chart (real Helm) + manager in the background (WIPE=1: on a fresh cluster); then export KUBECONFIG=$PWD/.dev/kubeconfig PATH=$PWD/.dev/bin:$PATH
	WIPE=$(WIPE) hack/dev.sh up

dev-down: ## Stop the manager and the local cluster
	hack/dev.sh down

demo: ## The whole canary upgrade of the walkthrough on the local cluster, narrated and checked (WIPE=1: on a fresh cluster)
	WIPE=$(WIPE) hack/demo.sh



DEMO_WEBHOOK_PORT ?= 29443
DEMO_METRICS_PORT ?= 28080
DEMO_PROBE_PORT ?= 28081
DEMO_CHARTS_PORT ?= 28090

test-demo: ## Run `make demo` on a throw-away cluster in a temp dir (ports DEMO_*_PORT), then tear it down; part of `make test`
	@dir=$$(mktemp -d -t meshrev-demo.XXXXXX); \
	export MESHREV_CLUSTER_DIR=$$dir MESHREV_WEBHOOK_PORT=$(DEMO_WEBHOOK_PORT) MESHREV_METRICS_PORT=$(DEMO_METRICS_PORT) MESHREV_PROBE_PORT=$(DEMO_PROBE_PORT) MESHREV_CHARTS_PORT=$(DEMO_CHARTS_PORT); \
	if hack/demo.sh; then hack/dev.sh down >/dev/null; rm -rf "$$dir"; \
	else rc=$$?; echo "manager log: $$dir/logs/manager.log"; tail -30 "$$dir/logs/manager.log"; hack/dev.sh down >/dev/null 2>&1; exit $$rc; fi

.PHONY: dev-up dev-down demo test-demo

SIZE ?= 1000
BATCH ?= 10

bench-scale: ## meshrev at SIZE pods on a throw-away kwok cluster: create, canary, promote, dataplane upgrade --batch BATCH --wait, unpublish; prints the figures of BENCHMARKS.md (not part of make test)
	SIZE=$(SIZE) BATCH=$(BATCH) hack/bench-scale.sh

.PHONY: bench-scale
