# Lifecycle controller and validating webhooks (issue 4). Included by the
# top-level Makefile.

.PHONY: test-lifecycle

test-lifecycle: ## Unit tests of the controller and validators, then the lifecycle e2e tests on a fresh local cluster
	$(GO) test -count=1 ./revisions/controller/ ./webhook/ -run 'Detect|TopOwner|DataPlane|ComputeStatus|PendingRelabel|DeploymentAvailable|ControlPlane|MeshValidator|NamespaceValidator'
	$(GO) test -tags e2e ./test/e2e/ -count=1 -run 'TestLifecycle' -timeout 20m
