#!/usr/bin/env bash
# demo.sh — the canary upgrade of the managed-mesh walkthrough, on the local
# cluster, narrated: install (stable 1.22.6), deploy canary 1.23.6, switch a
# namespace, redeploy one workload and verify it alone runs the canary,
# promote, upgrade the data plane, unpublish the old revision; then the
# rollback path with a second canary, and the refusals a user meets. Every
# expectation is checked; the first that fails stops the demo and says which.
# Each revision's control plane is a Helm release of Istio's own istiod chart
# (after the base chart's CRDs), from a chart repository on 127.0.0.1 that
# hack/dev.sh serves (hack/istiocharts).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEV=${MESHREV_CLUSTER_DIR:-$ROOT/.dev}
export KUBECONFIG=$DEV/kubeconfig PATH=$DEV/bin:$PATH
export CONTROL_PLANES=helm
STEP=0
T0=$SECONDS

step() { STEP=$((STEP + 1)); printf '\n\033[1;34m── Step %d: %s\033[0m\n' "$STEP" "$*"; }
say() { printf '\033[2m%s\033[0m\n' "$*"; }
run() { printf '\033[1m$ %s\033[0m\n' "$*"; "$@"; }
fail() { printf '\n\033[1;31mDEMO FAILED at step %d: %s\033[0m\n' "$STEP" "$*" >&2; exit 1; }
ok() { printf '\033[32m✓ %s\033[0m\n' "$*"; }

# expect_eq DESCRIPTION WANT COMMAND...: the command's output must equal WANT.
expect_eq() {
  local what=$1 want=$2; shift 2
  local got; got=$("$@" 2>&1) || true
  [[ $got == "$want" ]] || fail "$what: want '$want', got '$got'"
  ok "$what: $want"
}

# eventually DESCRIPTION WANT COMMAND...: like expect_eq, retried for 90 s.
eventually() {
  local what=$1 want=$2; shift 2
  local got
  for _ in $(seq 90); do
    got=$("$@" 2>&1) || true
    [[ $got == "$want" ]] && { ok "$what: $want"; return; }
    sleep 1
  done
  fail "$what: want '$want', got '$got' after 90 s"
}

# refused DESCRIPTION SUBSTRING COMMAND...: the command must fail and say SUBSTRING.
refused() {
  local what=$1 want=$2; shift 2
  printf '\033[1m$ %s\033[0m\n' "$*"
  local out
  if out=$("$@" 2>&1); then fail "$what: the command succeeded but must be refused"; fi
  printf '%s\n' "$out" | sed 's/^/  │ /'
  [[ $out == *"$want"* ]] || fail "$what: the refusal does not say '$want'"
  ok "$what: refused"
}

mesh() { kubectl get mesh default -o jsonpath="$1"; }
# revisions_of NS APP: the sorted, distinct revisions the pods of app APP run.
revisions_of() {
  kubectl get pods -n "$1" -l "$2" -o jsonpath='{range .items[*]}{.metadata.labels.meshrev\.io/revision}{"\n"}{end}' | sort -u | paste -sd, -
}
# release REV: the status meshrev reports for revision REV's Helm release.
release() { mesh "{.status.revisions[?(@.name==\"$1\")].controlPlane.releaseStatus}"; }
# helm_release NAME: NAME when Helm's storage has release NAME in istio-system.
helm_release() { helm list -n istio-system -q --filter "^$1\$"; }
nslabel() { kubectl get ns "$1" -o jsonpath="{.metadata.labels.${2//./\\.}}"; }
rollout() { kubectl rollout status -n "$1" "deploy/$2" --timeout=120s >/dev/null || fail "deployment $1/$2 did not roll out"; }
# contains DESCRIPTION SUBSTRING COMMAND...: the command's output must contain SUBSTRING.
contains() {
  local what=$1 want=$2; shift 2
  local got; got=$("$@" 2>&1) || true
  [[ $got == *"$want"* ]] || fail "$what: want '$want' in '$got'"
  ok "$what"
}
# pod_path NS SELECTOR PATH...: the jsonpath PATHs (space-separated) of the first pod of SELECTOR.
pod_path() {
  local ns=$1 sel=$2 tpl="" p; shift 2
  for p in "$@"; do tpl+="${tpl:+ }{.items[0]$p}"; done
  kubectl get pods -n "$ns" -l "$sel" -o jsonpath="$tpl"
}

step "Bring up the local cluster, build meshrev and install it with Helm (stable 1.22.6)"
hack/dev.sh up
# The cluster keeps its data across dev-down/up: the demo needs one it has not run on.
case $(mesh '{.status.history[*].action}') in
  "" | Install) ;;
  *) fail "the cluster in $DEV has been upgraded before (Mesh history: $(mesh '{.status.history[*].action}')); run the demo on a fresh cluster: make demo WIPE=1" ;;
esac

step "Deploy Bookinfo in namespace default, labelled istio-injection=enabled, and the ingress gateway"
run kubectl label namespace default istio-injection=enabled --overwrite
run kubectl apply -n default -f hack/demo/bookinfo.yaml >/dev/null
run kubectl apply -f hack/demo/gateway.yaml >/dev/null
for d in details-v1 ratings-v1 reviews-v1 reviews-v2 reviews-v3 productpage-v1; do rollout default "$d"; done
rollout istio-system istio-ingressgateway
eventually "control plane istiod-1-22-6 is available" 1 kubectl get deploy -n istio-system istiod-1-22-6 -o jsonpath='{.status.availableReplicas}'
eventually "its control plane is Helm release istiod-1-22-6 of Istio's istiod chart" deployed release 1-22-6
run helm list -n istio-system
expect_eq "every Bookinfo pod runs the 1.22.6 sidecar" 1-22-6 revisions_of default 'app in (details,ratings,reviews,productpage)'
expect_eq "the gateway runs 1.22.6" 1-22-6 revisions_of istio-system istio=ingressgateway
run meshrev status

step "Probes and a Job in the mesh: HTTP probes go through the sidecar, the Job's sidecar is native"
say "Bookinfo's readiness and liveness probes are HTTP GETs of /health on :9080. Under STRICT mTLS the"
say "kubelet could not reach them, so the injector points them at the sidecar's agent, which probes the app."
P='.spec.containers[?(@.name=="productpage")].readinessProbe.httpGet'
run kubectl get pods -n default -l app=productpage -o jsonpath="{.items[0]$P}{\"\n\"}"
expect_eq "productpage's readiness probe goes to the agent" "15020 /app-health/productpage/readyz" pod_path default app=productpage "$P.port" "$P.path"
say "sidecarMode Auto (the revision's default): every node's kubelet is 1.33 or newer, so istio-proxy is a"
say "native sidecar, an init container with restartPolicy Always."
run kubectl get nodes -o custom-columns=NODE:.metadata.name,KUBELET:.status.nodeInfo.kubeletVersion
PROXY='.spec.initContainers[?(@.name=="istio-proxy")]'
contains "the agent has productpage's original probe in ISTIO_KUBE_APP_PROBERS" \
  '"/app-health/productpage/readyz":{"httpGet":{"path":"/health","port":9080' \
  pod_path default app=productpage "$PROXY.env[?(@.name==\"ISTIO_KUBE_APP_PROBERS\")].value"
run kubectl apply -n default -f hack/demo/job.yaml >/dev/null
run kubectl wait -n default --for=condition=complete job/productpage-smoke --timeout=90s >/dev/null
expect_eq "the Job's pod runs istio-proxy as a native sidecar" "istio-proxy Always" \
  pod_path default job-name=productpage-smoke "$PROXY.name" "$PROXY.restartPolicy"
expect_eq "the Job completed" 1 kubectl get job -n default productpage-smoke -o jsonpath='{.status.succeeded}'
run kubectl delete -n default -f hack/demo/job.yaml --cascade=foreground >/dev/null

step "Deploy the canary control plane 1.23.6"
run meshrev canary deploy 1.23.6
expect_eq "the Mesh has canary 1-23-6" 1-23-6 mesh '{.spec.canary}'
eventually "control plane istiod-1-23-6 is available" 1 kubectl get deploy -n istio-system istiod-1-23-6 -o jsonpath='{.status.availableReplicas}'
eventually "Helm release istiod-1-23-6 is installed (Istio's 1.23.6 CRDs first)" deployed release 1-23-6
run helm list -n istio-system
eventually "phase is CanaryDeployed" CanaryDeployed mesh '{.status.phase}'
expect_eq "workloads still run 1.22.6" 1-22-6 revisions_of default app
run meshrev status

step "Switch namespace default to the canary and redeploy reviews-v2 to verify it"
run meshrev namespace switch default --to canary
expect_eq "default is labelled istio.io/rev=canary" canary nslabel default istio.io/rev
expect_eq "default no longer carries istio-injection" "" nslabel default istio-injection
run meshrev check-inject -n default
run meshrev redeploy -n default reviews-v2 --wait
run meshrev verify -n default reviews-v2
expect_eq "reviews-v2 runs the canary 1.23.6" 1-23-6 revisions_of default app=reviews,version=v2
expect_eq "every other Bookinfo workload still runs 1.22.6" 1-22-6 revisions_of default 'app in (details,ratings,reviews,productpage),version notin (v2)'
expect_eq "details-v1 and ratings-v1 still run 1.22.6" 1-22-6 revisions_of default 'app in (details,ratings)'
expect_eq "the gateway still runs 1.22.6" 1-22-6 revisions_of istio-system istio=ingressgateway
run meshrev status

step "Refusals a user meets on the way"
refused "revoke while namespace default is on the canary" "1 namespace (default (istio.io/rev=canary)) is still on the canary" meshrev revoke --yes
refused "a second canary while one is deployed" "already deployed" meshrev canary deploy 1.23.7

step "Promote the canary to stable"
run meshrev promote --yes
expect_eq "stable is 1-23-6" 1-23-6 mesh '{.spec.stable}'
expect_eq "no canary" "" mesh '{.spec.canary}'
eventually "namespace default relabelled istio.io/rev=stable" stable nslabel default istio.io/rev
eventually "status.previous is 1-22-6" 1-22-6 mesh '{.status.previous}'
eventually "phase is DataPlaneUpgrading" DataPlaneUpgrading mesh '{.status.phase}'
run meshrev dataplane status
refused "setting stable back after a promotion" "cannot be revoked" \
  kubectl patch mesh default --type=merge -p '{"spec":{"stable":"1-22-6"}}'
refused "unpublish while pods still run 1.22.6" "still run the sidecar of 1-22-6" meshrev unpublish --yes

step "Upgrade the data plane: every outdated workload and the gateway, by rolling update"
run meshrev dataplane upgrade --all --gateways --wait
expect_eq "every Bookinfo pod runs 1.23.6" 1-23-6 revisions_of default app
expect_eq "the gateway runs 1.23.6" 1-23-6 revisions_of istio-system istio=ingressgateway
eventually "no outdated pods remain" 0 mesh '{.status.dataPlane.outdated}'
eventually "phase is ReadyToUnpublish" ReadyToUnpublish mesh '{.status.phase}'
run meshrev status

step "Unpublish the old revision 1.22.6"
run meshrev unpublish --yes
expect_eq "only 1-23-6 is published" 1-23-6 mesh '{.spec.revisions[*].name}'
eventually "control plane istiod-1-22-6 is gone" "" kubectl get deploy -n istio-system istiod-1-22-6 --ignore-not-found -o name
eventually "Helm release istiod-1-22-6 is uninstalled" "" helm_release istiod-1-22-6
run helm list -n istio-system
eventually "phase is Stable" Stable mesh '{.status.phase}'
run meshrev status

say "The upgrade is done. Now the rollback path: a canary that fails verification."

step "Refused: a canary two minor versions ahead (1.23.6 → 1.25.0)"
refused "the skip policy" "skip policy" meshrev canary deploy 1.25.0

step "Deploy canary 1.24.2, switch default to it and redeploy reviews-v2"
run meshrev canary deploy 1.24.2
eventually "control plane istiod-1-24-2 is available" 1 kubectl get deploy -n istio-system istiod-1-24-2 -o jsonpath='{.status.availableReplicas}'
eventually "Helm release istiod-1-24-2 is installed" deployed release 1-24-2
run meshrev namespace switch default --to canary
run meshrev redeploy -n default reviews-v2 --wait
expect_eq "reviews-v2 runs the canary 1.24.2" 1-24-2 revisions_of default app=reviews,version=v2

step "Verification failed: switch default back to stable and redeploy reviews-v2"
run meshrev namespace switch default --to stable
run meshrev redeploy -n default reviews-v2 --wait
expect_eq "reviews-v2 is back on 1.23.6" 1-23-6 revisions_of default app=reviews,version=v2

step "Revoke the canary"
run meshrev revoke --yes
expect_eq "no canary" "" mesh '{.spec.canary}'
expect_eq "only 1-23-6 is published" 1-23-6 mesh '{.spec.revisions[*].name}'
eventually "control plane istiod-1-24-2 is gone" "" kubectl get deploy -n istio-system istiod-1-24-2 --ignore-not-found -o name
eventually "Helm release istiod-1-24-2 is uninstalled" "" helm_release istiod-1-24-2
run helm list -n istio-system
eventually "phase is Stable" Stable mesh '{.status.phase}'
run meshrev status

step "The Mesh's history records every step"
run kubectl get mesh default -o jsonpath='{range .status.history[*]}{.time}  {.action}  {.from} → {.to}{"\n"}{end}'
expect_eq "history" "Install DeployCanary Promote Unpublish DeployCanary Revoke" mesh '{.status.history[*].action}'

printf '\n\033[1;32mDemo complete in %d s: every expectation held.\033[0m\n' $((SECONDS - T0))
echo "The cluster is still up:  export KUBECONFIG=$KUBECONFIG PATH=$DEV/bin:\$PATH"
echo "Open the dashboard:       KUBECONFIG=$KUBECONFIG $DEV/bin/meshrev dashboard --open"
echo "Tear it down with:        make dev-down"
