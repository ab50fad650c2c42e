#!/usr/bin/env bash
# dev.sh up|down|status — meshrev on the local cluster, the way a person uses it:
# the cluster (reused when running, restarted on its data when stopped; WIPE=1
# drops its data and starts a fresh one), meshrev and meshrev-manager built into
# .dev/bin, the chart installed with real Helm, and the manager running in the
# background against .dev/kubeconfig (pods do not really run on the local
# cluster, so the webhooks point at the manager by URL), supervised: started
# again whenever it exits (see supervise).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# MESHREV_CLUSTER_DIR moves everything (cluster, kubeconfig, bin, logs) out of
# .dev, e.g. for `make test-demo`, which must not touch a person's cluster.
DEV=${MESHREV_CLUSTER_DIR:-$ROOT/.dev}
export MESHREV_CLUSTER_DIR=$DEV
BIN=$DEV/bin
LOGS=$DEV/logs
export KUBECONFIG=$DEV/kubeconfig
PORT=${MESHREV_WEBHOOK_PORT:-19443}
METRICS_PORT=${MESHREV_METRICS_PORT:-18080}
PROBE_PORT=${MESHREV_PROBE_PORT:-18081}
NS=meshrev-system
# CONTROL_PLANES=helm (default): the revisions' control planes are Helm
# releases of Istio's own charts, served on 127.0.0.1:$CHARTS_PORT by
# hack/istiocharts (packaged from the istio.io/istio module test/istiocharts
# pins, as 1.22.6, 1.23.6 and 1.24.2). CONTROL_PLANES=image: meshrev's own
# Deployment and Service per revision.
CONTROL_PLANES=${CONTROL_PLANES:-helm}
CHARTS_PORT=${MESHREV_CHARTS_PORT:-18090}
CHARTS_PIDFILE=$DEV/istiocharts.pid
# PIDFILE is the supervisor's (hack/dev.sh supervise), which restarts the
# manager whenever it exits; CHILDFILE is the running manager's.
PIDFILE=$DEV/manager.pid
CHILDFILE=$DEV/manager-child.pid

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'dev.sh: %s\n' "$*" >&2; exit 1; }

manager_running() {
  [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$(cat "$PIDFILE")/cmdline" 2>/dev/null | grep -q "dev.sh supervise"
}

stop_manager() {
  if manager_running; then
    local pid; pid=$(cat "$PIDFILE")
    say "stopping meshrev-manager and its supervisor (pid $pid)"
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE" "$CHILDFILE"
}

stop_charts() {
  if [[ -f $CHARTS_PIDFILE ]] && kill -0 "$(cat "$CHARTS_PIDFILE")" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$(cat "$CHARTS_PIDFILE")/cmdline" 2>/dev/null | grep -q istiocharts; then
    say "stopping the chart repository (pid $(cat "$CHARTS_PIDFILE"))"
    kill "$(cat "$CHARTS_PIDFILE")"
  fi
  rm -f "$CHARTS_PIDFILE"
}

# start_charts serves Istio's charts on 127.0.0.1:$CHARTS_PORT (the Mesh
# keeps that address, so it is fixed) and waits for its index.
start_charts() {
  stop_charts
  say "serving Istio's charts (base, istiod 1.22.6 1.23.6 1.24.2) on 127.0.0.1:$CHARTS_PORT (log: $LOGS/istiocharts.log)"
  go build -o "$BIN/istiocharts" ./hack/istiocharts
  nohup "$BIN/istiocharts" -listen "127.0.0.1:$CHARTS_PORT" -module "$ROOT/test/istiocharts" \
    -versions 1.22.6,1.23.6,1.24.2 >"$LOGS/istiocharts.log" 2>&1 &
  echo $! >"$CHARTS_PIDFILE"
  for _ in $(seq 120); do
    curl -fs "http://127.0.0.1:$CHARTS_PORT/index.yaml" >/dev/null 2>&1 && return
    kill -0 "$(cat "$CHARTS_PIDFILE")" 2>/dev/null || { cat "$LOGS/istiocharts.log"; die "the chart repository exited (log: $LOGS/istiocharts.log)"; }
    sleep 1
  done
  die "the chart repository did not answer within 120 s (log: $LOGS/istiocharts.log)"
}

# supervise runs meshrev-manager and starts it again whenever it exits (a
# crash, an OOM kill, kill -9), as a Deployment's kubelet would: the webhooks
# are failurePolicy Fail, so a manager nobody restarts refuses meshed pods
# until someone notices. Backoff 1 s, doubling to 30 s while it keeps dying
# within a minute. TERM stops the manager (gracefully) and the supervisor.
supervise() {
  local child= backoff=1
  trap '[[ -n $child ]] && kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; rm -f "$CHILDFILE"; exit 0' TERM INT
  while true; do
    local started=$SECONDS
    "$BIN/meshrev-manager" --kubeconfig "$KUBECONFIG" --namespace "$NS" --mesh-namespace istio-system \
      --webhook-host 127.0.0.1 --webhook-port "$PORT" --webhook-url "https://127.0.0.1:$PORT" \
      --cert-dir "$DEV/certs" --manage-certs --templates-configmap meshrev-templates \
      --metrics-bind-address "127.0.0.1:$METRICS_PORT" --health-probe-bind-address "127.0.0.1:$PROBE_PORT" \
      --leader-elect >>"$LOGS/manager.log" 2>&1 &
    child=$!
    echo "$child" >"$CHILDFILE"
    local rc=0
    wait "$child" || rc=$?
    (( SECONDS - started > 60 )) && backoff=1
    echo "dev.sh supervise: meshrev-manager (pid $child) exited with status $rc; starting it again in ${backoff}s" >>"$LOGS/manager.log"
    sleep "$backoff"
    (( backoff = backoff * 2 > 30 ? 30 : backoff * 2 ))
  done
}

up() {
  mkdir -p "$BIN" "$LOGS"
  say "local cluster"
  go run ./hack/cluster up ${WIPE:+-wipe}
  say "building meshrev and meshrev-manager into .dev/bin"
  go build -o "$BIN/meshrev-manager" ./cmd/meshrev-manager
  go build -o "$BIN/meshrev" ./cmd/meshrev
  ln -sf meshrev "$BIN/kubectl-meshrev"

  local charts=()
  case $CONTROL_PLANES in
    helm)
      start_charts
      charts=(--set mesh.controlPlane.helm.repository="http://127.0.0.1:$CHARTS_PORT") ;;
    image) ;;
    *) die "CONTROL_PLANES=$CONTROL_PLANES: want helm or image" ;;
  esac

  say "installing the chart (release meshrev, namespace $NS, stable 1.22.6, $CONTROL_PLANES control planes)"
  "$BIN/helm" upgrade --install meshrev charts/meshrev -n "$NS" --create-namespace --wait=false \
    --set manager.enabled=false \
    --set webhook.url="https://127.0.0.1:$PORT" \
    --set mesh.stable.version=1.22.6 \
    --set mesh.controlPlane.enabled=true \
    "${charts[@]}" \
    --set mesh.namespace=istio-system >"$LOGS/helm.log" 2>&1 || { cat "$LOGS/helm.log"; die "helm install failed (log: $LOGS/helm.log)"; }

  stop_manager
  say "starting meshrev-manager on 127.0.0.1:$PORT, supervised (log: $LOGS/manager.log)"
  mkdir -p "$DEV/certs"
  : >"$LOGS/manager.log"
  nohup "$ROOT/hack/dev.sh" supervise >/dev/null 2>&1 &
  echo $! >"$PIDFILE"

  say "waiting for the webhooks to answer"
  for i in $(seq 120); do
    manager_running || { tail -20 "$LOGS/manager.log"; die "meshrev-manager exited (log: $LOGS/manager.log)"; }
    if curl -fsk "http://127.0.0.1:$PROBE_PORT/readyz" >/dev/null 2>&1 &&
      "$BIN/kubectl" get mesh default >/dev/null 2>&1 &&
      "$BIN/kubectl" create namespace meshrev-probe --dry-run=server -o name >/dev/null 2>&1 &&
      "$BIN/kubectl" run meshrev-probe -n default --image=probe --restart=Never --dry-run=server \
        --labels sidecar.istio.io/inject=true -o jsonpath='{.metadata.labels.meshrev\.io/revision}' 2>/dev/null | grep -q .; then
      break
    fi
    (( i % 10 == 0 )) && echo "   still waiting ($i s): manager log tail: $(tail -1 "$LOGS/manager.log")"
    sleep 1
    (( i == 120 )) && die "the webhooks did not answer within 120 s (log: $LOGS/manager.log)"
  done
  say "ready. Use it with:"
  echo "   export KUBECONFIG=$KUBECONFIG PATH=$BIN:\$PATH"
}

down() {
  stop_manager
  stop_charts
  go run ./hack/cluster down
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  supervise) supervise ;;
  *) die "usage: hack/dev.sh up|down" ;;
esac
