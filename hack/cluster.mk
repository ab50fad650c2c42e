# Local Kubernetes cluster for tests and the demo (issue 3).
# Included by the top-level Makefile; see hack/cluster/README.md.
#
# The binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, helm, kwok) are built from the pinned modules in hack/cluster/build
# into $(MESHREV_CACHE) (default ~/.cache/meshrev), outside git. The cluster
# runs in $(MESHREV_CLUSTER_DIR) (default .dev/): kubeconfig, bin/, logs/, cluster/.

GO ?= go
E2E_TIMEOUT ?= 45m

.PHONY: cluster-build cluster-up cluster-down cluster-status test-e2e

cluster-build: ## Build the pinned cluster binaries into the cache (first time ~10 min on 2 cores, then instant)
	$(GO) run ./hack/cluster build

cluster-up: ## Start the local cluster (reuse a healthy one, restart a stopped one on its data; WIPE=1 starts afresh): .dev/kubeconfig, .dev/bin/{kubectl,helm}
	$(GO) run ./hack/cluster up $(if $(WIPE),-wipe)

cluster-down: ## Stop the local cluster started by cluster-up (logs stay in .dev/logs)
	$(GO) run ./hack/cluster down

cluster-status: ## Tell whether the local cluster is running and healthy
	$(GO) run ./hack/cluster status

# E2E_ARTIFACTS keeps what the tests save with t.ArtifactDir (the
# dashboard's screenshots), under _artifacts/.
E2E_ARTIFACTS ?= $(CURDIR)/.dev/e2e

test-e2e: cluster-build chromium ## Run the e2e tests (all but the fault suite, see test-faults) against a fresh local cluster in a temp dir (MESHREV_E2E_KUBECONFIG=.dev/kubeconfig reuses cluster-up's); screenshots under .dev/e2e
	mkdir -p $(E2E_ARTIFACTS)
	MESHREV_CHROMIUM=$(CHROMIUM) $(GO) test -tags e2e ./test/e2e/... -count=1 -timeout $(E2E_TIMEOUT) -skip '^TestFaults$$' -artifacts -outputdir $(E2E_ARTIFACTS)
