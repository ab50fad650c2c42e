# The differential compatibility suite against Istio's own injector (issue 11):
# a Go module of its own in test/compat (istio.io/istio pinned there, so the
# main module's dependency graph stays as it is). See COMPAT.md.

.PHONY: test-compat test-compat-update bench-istio

test-compat: ## Compare meshrev's injection with Istio's own injector (corpus + generated pods, classic and native, with istio-init and istio-cni; Pod Security baseline in CNI mode); fails below the floors in test/compat/testdata/floors.json
	cd test/compat && $(GO) vet . && $(GO) test -count=1 -timeout 20m -run TestCompat -v .

test-compat-update: ## Re-measure and record the match-rate floors after an improvement (review the diff)
	cd test/compat && $(GO) test -count=1 -timeout 20m -run TestCompat -update .

bench-istio: ## Istio's injector (its BenchmarkInjectServePC0 setup) and meshrev's /istio-anchor on the same pod, in one run (BENCHMARKS.md)
	cd test/compat && $(GO) test -run '^$$' -bench Anchor -benchmem -count 5 .
