# The Helm chart (charts/meshrev, issue 6). Included by the top-level Makefile.
# Its Go tests (golden renders, schema, lint through the Helm SDK, the selector
# matrix against revisions.Resolve) run in test-unit; the e2e test
# (test/e2e/chart_test.go) installs it with the real helm binary in test-e2e.

.PHONY: chart-lint chart-golden

chart-lint: ## helm lint --strict the chart (default and cert-manager mode) with the pinned helm binary
	@helm=$$($(GO) run ./hack/cluster build | awk '$$1 ~ /\/helm$$/ {print $$1}'); \
	[ -x "$$helm" ] || { echo "no helm binary from 'go run ./hack/cluster build'"; exit 1; }; \
	"$$helm" lint --strict charts/meshrev && \
	"$$helm" lint --strict charts/meshrev --set certManager.enabled=true

chart-golden: ## Refresh the chart's golden renders (charts/testdata/golden) after a deliberate change; review the diff
	$(GO) test ./charts/ -run TestGolden -count=1 -update
