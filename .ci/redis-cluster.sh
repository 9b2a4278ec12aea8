#!/usr/bin/env bash
# Starts a Redis Cluster of 3 masters and 3 replicas on free loopback ports, nothing on
# disk but its node tables in a temporary folder, and prints the line that points the
# tests at it:
#   export LATCHKEY_TEST_REDIS_CLUSTER=redis-cluster://127.0.0.1:P1,127.0.0.1:P2,...
# Usage: eval "$(.ci/redis-cluster.sh)"     (stop it with: kill $(cat DIR/*.pid))
# The folder is printed too (LATCHKEY_TEST_REDIS_CLUSTER_DIR). A failover takes about
# `cluster-node-timeout` (1 s here) plus the election: two to three seconds.
set -euo pipefail

dir=$(mktemp -d /tmp/latchkey-redis-cluster.XXXXXX)

# Six ports that nothing listens on (and their cluster-bus ports, +10000, too).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null \
      && ! (exec 3<>/dev/tcp/127.0.0.1/$((port + 10000))) 2>/dev/null \
      && [[ " ${ports[*]:-} " != *" $port "* ]]; then
      echo "$port"
      return
    fi
  done
}

ports=()
for _ in 1 2 3 4 5 6; do ports+=("$(free_port)"); done

for port in "${ports[@]}"; do
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
    --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
    --cluster-node-timeout 1000 --cluster-replica-validity-factor 0 \
    --save "" --appendonly no --dir "$dir" \
    --pidfile "$dir/$port.pid" --logfile "$dir/$port.log" >/dev/null
done
for port in "${ports[@]}"; do
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
done

nodes=()
for port in "${ports[@]}"; do nodes+=("127.0.0.1:$port"); done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
  || { cat "$dir/create.log" >&2; exit 1; }

# Ready when every node agrees the cluster is ok and every master has its replica.
for _ in $(seq 200); do
  ready=1
  for port in "${ports[@]}"; do
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ready=0
  done
  replicas=$(redis-cli -p "${ports[0]}" cluster nodes 2>/dev/null | grep -c slave || true)
  [[ $ready == 1 && $replicas == 3 ]] && break
  sleep 0.1
done
[[ $ready == 1 && $replicas == 3 ]] || { echo "Redis Cluster did not come up (see $dir)" >&2; exit 1; }

seeds=$(IFS=,; echo "${nodes[*]}")
echo "export LATCHKEY_TEST_REDIS_CLUSTER=redis-cluster://$seeds"
echo "export LATCHKEY_TEST_REDIS_CLUSTER_DIR=$dir"
