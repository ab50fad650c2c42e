# The differential compatibility suite against Istio's own injector (issue 11):
# a Go module of its own in test/compat (istio.io/istio pinned there, so the
# main module's dependency graph stays as it is). See COMPAT.md.

.PHONY: test-compat test-compat-update

test-compat: ## Compare meshrev's injection with Istio's own injector (corpus + generated pods, classic and native); fails below the floors in test/compat/testdata/floors.json
	cd test/compat && $(GO) vet . && $(GO) test -count=1 -timeout 20m -run TestCompat -v .

test-compat-update: ## Re-measure and record the match-rate floors after an improvement (review the diff)
	cd test/compat && $(GO) test -count=1 -timeout 20m -run TestCompat -update .
