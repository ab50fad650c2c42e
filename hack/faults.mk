# The fault suite (test/e2e/faults_test.go): meshrev-manager as a process on
# a fresh local cluster, under continuous pod creation, through kill -9, an
# API server outage, a frozen etcd, a deleted Mesh, a deleted templates
# ConfigMap, slow clients, 500 concurrent reviews, and a promotion whose
# leader is killed mid-relabel (restarted, or taken over by a standby). It stops cluster
# components, so it always starts its own cluster (never .dev's). Its
# "FAULT ..." lines are the figures of RELIABILITY.md.
FAULTS_TIMEOUT ?= 30m

test-faults: cluster-build ## The fault suite on a throw-away local cluster (figures: RELIABILITY.md); part of `make test`
	env -u MESHREV_E2E_KUBECONFIG $(GO) test -tags e2e ./test/e2e/ -run '^TestFaults(Promotion)?$$' -count=1 -v -timeout $(FAULTS_TIMEOUT) 2>&1 | \
		tee $${TMPDIR:-/tmp}/meshrev-faults.log | grep -E '^(=== RUN|--- |\s+--- |FAIL|ok|PASS)|FAULT '; exit $${PIPESTATUS[0]}

.PHONY: test-faults
