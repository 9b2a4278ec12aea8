#!/usr/bin/env bash
# Starts a Redis Cluster of 3 masters and 3 replicas on free loopback ports, nothing on
# disk but the node tables Redis Cluster keeps (in a temporary folder): no persistence,
# and replicas sync without snapshot files (diskless; each node still names its own
# snapshot file, since a shared name once let one replica load another shard's data),
# and prints the line that points the
# tests at it:
#   export LATCHKEY_TEST_REDIS_CLUSTER=redis-cluster://127.0.0.1:P1,127.0.0.1:P2,...
# Usage: eval "$(.ci/redis-cluster.sh [--ports FIRST-LAST])"
#   (stop it with: kill $(cat DIR/*.pid))
# Node ports come from FIRST-LAST (default 10000-11999, the shared cluster's range; the
# tests' private clusters pass their own), bus ports are node ports + 10000: both apart
# from every other range the tests use (see the allocation on `free_address` in
# crates/latchkey-server/tests/common/mod.rs) and from the kernel's ephemeral ports.
# The folder is printed too (LATCHKEY_TEST_REDIS_CLUSTER_DIR). A failover takes about
# `cluster-node-timeout` (1 s here) plus the election: two to three seconds.
set -euo pipefail
source "$(dirname "$0")/ports.sh"

first=10000 last=11999
if [[ ${1:-} == --ports ]]; then
  [[ ${2:-} =~ ^([0-9]+)-([0-9]+)$ ]] || { echo "--ports FIRST-LAST" >&2; exit 2; }
  first=${BASH_REMATCH[1]} last=${BASH_REMATCH[2]}
fi
check_outside_ephemeral "$first" "$last"
check_outside_ephemeral $((first + 10000)) $((last + 10000))

dir=$(mktemp -d /tmp/latchkey-redis-cluster.XXXXXX)
# A cluster that did not come up leaves no node behind.
trap 'status=$?; if [[ $status != 0 ]]; then
  for pidfile in "$dir"/*.pid; do kill -9 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null || true; done
fi' EXIT

# A port of the range that nothing listens on, with its cluster-bus port (+10000) free
# too, and not one of this cluster's.
free_port() {
  local port taken=" ${ports[*]:-} "
  while :; do
    port=$((first + RANDOM % (last - first + 1)))
    if ! accepts "$port" && ! accepts $((port + 10000)) && [[ $taken != *" $port "* ]]; then
      echo "$port"
      return
    fi
  done
}

# Starts a node on a free port, ready when the node itself listens on its port and its
# bus port (another process could have taken either meanwhile: then the node exits, and
# it starts again on another port).
start_node() {
  local port pid
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    # In the background rather than --daemonize, so that its pid is known at once and
    # its exit is seen at once; its output goes to its log, not to this script's.
    redis-server --port "$port" --bind 127.0.0.1 \
      --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
      --cluster-node-timeout 1000 --cluster-replica-validity-factor 0 \
      --cluster-require-full-coverage no \
      --save "" --appendonly no --dir "$dir" --dbfilename "dump-$port.rdb" \
      --repl-diskless-sync yes --repl-diskless-sync-delay 0 --repl-diskless-load on-empty-db \
      --pidfile "$dir/$port.pid" --logfile "$dir/$port.log" </dev/null >/dev/null 2>&1 &
    pid=$!
    echo "$pid" >"$dir/$port.pid"
    if wait_for_listener "$pid" 10 "$port" $((port + 10000)); then
      ports+=("$port")
      return
    fi
    echo "a Redis Cluster node did not start on $port (retrying elsewhere): $(tail -n 3 "$dir/$port.log" 2>/dev/null)" >&2
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/$port.pid" "$dir/nodes-$port.conf"
  done
  echo "no Redis Cluster node would start (see $dir)" >&2
  exit 1
}

ports=()
for _ in 1 2 3 4 5 6; do start_node; done

nodes=()
for port in "${ports[@]}"; do nodes+=("127.0.0.1:$port"); done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
  || { cat "$dir/create.log" >&2; exit 1; }

# Ready when every node agrees the cluster is ok and every replica has finished its
# first sync with its master (a failover before that would lose the shard's data).
for _ in $(seq 300); do
  ready=1
  synced=0
  for port in "${ports[@]}"; do
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ready=0
    redis-cli -p "$port" info replication 2>/dev/null | grep -q '^master_link_status:up' \
      && synced=$((synced + 1))
  done
  [[ $ready == 1 && $synced == 3 ]] && break
  sleep 0.1
done
[[ $ready == 1 && $synced == 3 ]] || { echo "Redis Cluster did not come up (see $dir)" >&2; exit 1; }

seeds=$(IFS=,; echo "${nodes[*]}")
echo "export LATCHKEY_TEST_REDIS_CLUSTER=redis-cluster://$seeds"
echo "export LATCHKEY_TEST_REDIS_CLUSTER_DIR=$dir"
