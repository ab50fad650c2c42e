# The pod injector (webhook/inject*): goldens, fuzzing and its e2e test.

FUZZTIME ?= 60s

inject-golden: ## Refresh the injector's golden files (webhook/testdata/inject) after a deliberate change; review the diff
	$(GO) test ./webhook/ -run TestInjectGolden -count=1 -update

fuzz-inject: ## Fuzz the injector and its JSON walker for FUZZTIME each (default 60s); failing inputs land in webhook/testdata/fuzz
	$(GO) test ./webhook/ -run '^$$' -fuzz '^FuzzServeInject$$' -fuzztime $(FUZZTIME) -parallel 1
	$(GO) test ./webhook/ -run '^$$' -fuzz '^FuzzJSONWalker$$' -fuzztime $(FUZZTIME) -parallel 1

bench-inject: ## Only the admission hot-path benchmarks (figures in BENCHMARKS.md, "Admission hot path")
	$(GO) test ./webhook/ -run '^$$' -bench '^BenchmarkServeInject$$' -benchmem -count 5

test-e2e-inject: ## The injector alone against the local cluster (reuses .dev/kubeconfig when cluster-up ran)
	MESHREV_E2E_KUBECONFIG=$(if $(wildcard .dev/kubeconfig),$(CURDIR)/.dev/kubeconfig,) \
		$(GO) test -tags e2e ./test/e2e/ -run '^TestInjectorThroughTheAPIServer$$' -count=1 -v

.PHONY: inject-golden fuzz-inject bench-inject test-e2e-inject
