#!/usr/bin/env bash
# bench-scale.sh — meshrev at SIZE pods on a throw-away local cluster (kwok),
# as a platform team with a large cluster would use it (issue 13):
#   namespaces of 5 Deployments × 10 replicas (SIZE/50 namespaces), canary
#   deploy, promote, `meshrev dataplane upgrade --all --batch BATCH --wait`,
#   unpublish; then prints the figures BENCHMARKS.md reports.
# Usage: make bench-scale SIZE=1000 [BATCH=10]   (not part of make test)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1000}
BATCH=${BATCH:-10}
REPLICAS=10
PER_NS=5
(( SIZE % (REPLICAS * PER_NS) == 0 )) || { echo "SIZE must be a multiple of $((REPLICAS * PER_NS))" >&2; exit 2; }
NAMESPACES=$(( SIZE / (REPLICAS * PER_NS) ))

DIR=$(mktemp -d -t meshrev-bench.XXXXXX)
export MESHREV_CLUSTER_DIR=$DIR MESHREV_WEBHOOK_PORT=${BENCH_WEBHOOK_PORT:-39443} \
  MESHREV_METRICS_PORT=${BENCH_METRICS_PORT:-38080} MESHREV_PROBE_PORT=${BENCH_PROBE_PORT:-38081}
export KUBECONFIG=$DIR/kubeconfig PATH=$DIR/bin:$PATH
METRICS=http://127.0.0.1:$MESHREV_METRICS_PORT/metrics
cleanup() { [[ -n ${KEEP:-} ]] || { hack/dev.sh down >/dev/null 2>&1 || true; rm -rf "$DIR"; }; }
trap cleanup EXIT

log() { printf '%s  %s\n' "$(date -u +%T)" "$*" >&2; }
now() { date +%s.%N; }

CONTROL_PLANES=image hack/dev.sh up >"$DIR/dev-up.log" 2>&1 || { cat "$DIR/dev-up.log"; exit 1; }
PID=$(cat "$DIR/manager.pid")
log "cluster and manager up (pid $PID) in $DIR; $SIZE pods in $NAMESPACES namespaces"

# Enough fake capacity: the cluster's three nodes take 110 pods each.
nodes=$(( SIZE / 3000 + 2 ))
for i in $(seq 0 $((nodes - 1))); do
  cat <<YAML
apiVersion: v1
kind: Node
metadata:
  name: bench-node-$i
  labels: {kubernetes.io/hostname: bench-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
status:
  capacity: {cpu: "1000", memory: 4Ti, pods: "8000"}
  allocatable: {cpu: "1000", memory: 4Ti, pods: "8000"}
---
YAML
done | kubectl create -f - >/dev/null

# metric NAME [LABEL-REGEX]: the sum of the manager's samples of NAME whose labels match.
metric() {
  curl -fs "$METRICS" | awk -v name="$1" -v re="${2:-}" '
    $1 ~ "^"name"([{]|$)" && (re == "" || $1 ~ re) { s += $NF } END { printf "%.6f\n", s+0 }'
}
writes() { metric rest_client_requests_total 'method="(POST|PUT|PATCH|DELETE)"'; }
snapshot() { # prints: writes cpu reconcile_sum reconcile_count status_writes conflicts post put patch delete
  echo "$(writes) $(metric process_cpu_seconds_total) $(metric controller_runtime_reconcile_time_seconds_sum 'controller="mesh"') \
$(metric controller_runtime_reconcile_time_seconds_count 'controller="mesh"') $(metric meshrev_status_writes_total) $(metric meshrev_status_conflicts_total) \
$(metric rest_client_requests_total 'method="POST"') $(metric rest_client_requests_total 'method="PUT"') \
$(metric rest_client_requests_total 'method="PATCH"') $(metric rest_client_requests_total 'method="DELETE"') \
$(metric meshrev_status_compute_seconds_sum) $(metric meshrev_status_compute_seconds_count)"
}
by_method() { # by_method BEFORE-ARRAY-NAME AFTER-ARRAY-NAME
  local -n b=$1 a=$2
  printf 'POST %.0f, PUT %.0f, PATCH %.0f, DELETE %.0f' "$(echo "${a[6]} - ${b[6]}" | bc)" "$(echo "${a[7]} - ${b[7]}" | bc)" \
    "$(echo "${a[8]} - ${b[8]}" | bc)" "$(echo "${a[9]} - ${b[9]}" | bc)"
}
mesh_json() { kubectl get mesh default -o json; }
mesh_field() { kubectl get mesh default -o "jsonpath=$1"; }
wait_for() { # wait_for DESCRIPTION TIMEOUT-S COMMAND...
  local what=$1 limit=$2; shift 2
  local start; start=$(now)
  until "$@"; do
    if (( $(printf '%.0f' "$(echo "$(now) - $start" | bc)") > limit )); then log "timed out: $what"; exit 1; fi
    sleep 1
  done
}
MAX_MESH=0
sample_mesh() { local n; n=$(mesh_json | wc -c); (( n > MAX_MESH )) && MAX_MESH=$n; return 0; }

# Phase 1: create the workloads.
gen() {
  for n in $(seq 1 "$NAMESPACES"); do
    ns=$(printf 'bench-%04d' "$n")
    printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {istio-injection: enabled}}\n---\n' "$ns"
    for d in $(seq 1 $PER_NS); do
      printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app-%d, namespace: %s}\nspec:\n  replicas: %d\n  selector: {matchLabels: {app: app-%d}}\n  template:\n    metadata: {labels: {app: app-%d}}\n    spec: {containers: [{name: app, image: registry.k8s.io/pause:3.10}]}\n---\n' \
        "$d" "$ns" "$REPLICAS" "$d" "$d"
    done
  done
}
gen >"$DIR/workloads.yaml"
before=($(snapshot)); t0=$(now)
kubectl apply -f "$DIR/workloads.yaml" >/dev/null
pods_counted() { [[ $(mesh_field '{.status.dataPlane.pods}') == "$SIZE" ]]; }
wait_for "the Mesh counts $SIZE pods" 3600 pods_counted
t1=$(now); after=($(snapshot))
create_s=$(echo "$t1 - $t0" | bc)
methods_create=$(by_method before after)
log "created $SIZE pods in ${create_s}s"
sample_mesh

k=$(echo "scale=4; $SIZE / 1000" | bc)
w_create=$(echo "(${after[0]} - ${before[0]}) / $k" | bc -l)
cpu_create=$(echo "(${after[1]} - ${before[1]}) / $k" | bc -l)
rc_n=$(echo "${after[3]} - ${before[3]}" | bc -l)
rc_mean=$(echo "if ($rc_n > 0) (${after[2]} - ${before[2]}) / $rc_n * 1000 else 0" | bc -l)
cc_n=$(echo "${after[11]} - ${before[11]}" | bc -l)
cc_mean=$(echo "if ($cc_n > 0) (${after[10]} - ${before[10]}) / $cc_n * 1000 else 0" | bc -l)
sw_create=$(echo "${after[4]} - ${before[4]}" | bc -l)
mesh_steady=$(mesh_json | wc -c)

# meshrev status at SIZE pods (best of 3).
st_best=999
for _ in 1 2 3; do
  s=$(now); meshrev status >/dev/null; e=$(now)
  d=$(echo "$e - $s" | bc); (( $(echo "$d < $st_best" | bc) )) && st_best=$d
done

# Phase 2: canary, promote.
meshrev canary deploy 1.23.6 >/dev/null
canary_ready() { [[ $(mesh_field '{.status.revisions[?(@.name=="1-23-6")].controlPlaneReady}') == true ]]; }
wait_for "canary deployed" 600 canary_ready
meshrev promote --yes >/dev/null
upgrading() { [[ $(mesh_field '{.status.phase}') == DataPlaneUpgrading ]]; }
wait_for "promoted" 600 upgrading
sample_mesh

# Phase 3: the data-plane upgrade, sampling the Mesh size meanwhile.
before=($(snapshot))
( while sleep 2; do mesh_json 2>/dev/null | wc -c; done >"$DIR/mesh-sizes" ) &
SAMPLER=$!
u0=$(now)
meshrev dataplane upgrade --all --batch "$BATCH" --wait --timeout 10m >"$DIR/upgrade.log" 2>&1 || { tail -20 "$DIR/upgrade.log"; exit 1; }
u1=$(now)
ready_to_unpublish() { [[ $(mesh_field '{.status.phase}') == ReadyToUnpublish ]]; }
wait_for "ReadyToUnpublish" 600 ready_to_unpublish
u2=$(now)
kill "$SAMPLER" 2>/dev/null || true
after=($(snapshot))
methods_upgrade=$(by_method before after)
while read -r n; do if (( n > MAX_MESH )); then MAX_MESH=$n; fi; done <"$DIR/mesh-sizes"
upgrade_s=$(echo "$u1 - $u0" | bc)
lag_s=$(echo "$u2 - $u1" | bc)
workloads=$(( NAMESPACES * PER_NS ))
rate=$(echo "$workloads / $upgrade_s" | bc -l)
w_upgrade=$(echo "(${after[0]} - ${before[0]}) / $k" | bc -l)
cpu_upgrade=$(echo "(${after[1]} - ${before[1]}) / $k" | bc -l)
rcu_n=$(echo "${after[3]} - ${before[3]}" | bc -l)
rcu_mean=$(echo "if ($rcu_n > 0) (${after[2]} - ${before[2]}) / $rcu_n * 1000 else 0" | bc -l)
ccu_n=$(echo "${after[11]} - ${before[11]}" | bc -l)
ccu_mean=$(echo "if ($ccu_n > 0) (${after[10]} - ${before[10]}) / $ccu_n * 1000 else 0" | bc -l)
sw_upgrade=$(echo "${after[4]} - ${before[4]}" | bc -l)
conflicts=$(metric meshrev_status_conflicts_total)

# Phase 4: unpublish.
meshrev unpublish --yes >/dev/null
stable_again() { [[ $(mesh_field '{.status.phase}') == Stable ]]; }
wait_for "Stable after unpublish" 600 stable_again

rss=$(metric process_resident_memory_bytes)
cpu_total=$(metric process_cpu_seconds_total)
printf '\nmeshrev bench-scale: %s pods, %s namespaces, %s workloads (batch %s), %s\n' "$SIZE" "$NAMESPACES" "$workloads" "$BATCH" "$(date -u +%FT%TZ)"
printf '| figure | value |\n|---|---|\n'
printf '| pods created, until the Mesh counts them | %.0f s |\n' "$create_s"
printf '| manager writes per 1k pods created (all, incl. leader-election lease renewals) | %.1f |\n' "$w_create"
printf '| manager writes while creating, by method | %s |\n' "$methods_create"
printf '| Mesh status writes while creating | %.0f |\n' "$sw_create"
printf '| mean reconcile while creating (%.0f reconciles; API round trips included) | %.1f ms |\n' "$rc_n" "$rc_mean"
printf '| of which computing the status from the cache (mean) | %.2f ms |\n' "$cc_mean"
printf '| manager CPU-s per 1k pods created | %.2f |\n' "$cpu_create"
printf '| Mesh (-o json), steady / max seen (upgrade included) | %s B / %s B |\n' "$mesh_steady" "$MAX_MESH"
printf '| meshrev status (best of 3) | %.3f s |\n' "$st_best"
printf '| data-plane upgrade wall time (%s workloads, --batch %s) | %.0f s (%.2f workloads/s) |\n' "$workloads" "$BATCH" "$upgrade_s" "$rate"
printf '| manager writes per 1k pods during the upgrade | %.1f |\n' "$w_upgrade"
printf '| manager writes during the upgrade, by method | %s |\n' "$methods_upgrade"
printf '| Mesh status writes during the upgrade | %.0f |\n' "$sw_upgrade"
printf '| mean reconcile during the upgrade (%.0f reconciles; API round trips included) | %.1f ms |\n' "$rcu_n" "$rcu_mean"
printf '| of which computing the status from the cache (mean) | %.2f ms |\n' "$ccu_mean"
printf '| manager CPU-s per 1k pods during the upgrade | %.2f |\n' "$cpu_upgrade"
printf '| status lag (upgrade --wait returned → ReadyToUnpublish) | %.1f s |\n' "$lag_s"
printf '| status write conflicts (whole run) | %.0f |\n' "$conflicts"
printf '| manager RSS at the end / CPU-s whole run | %.0f MiB / %.1f |\n' "$(echo "$rss / 1048576" | bc -l)" "$cpu_total"
