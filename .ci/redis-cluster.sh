#!/usr/bin/env bash
# Starts a Redis Cluster of 3 masters and 3 replicas on free loopback ports, nothing on
# disk but the node tables Redis Cluster keeps (in a temporary folder): no persistence,
# and replicas sync without snapshot files (diskless; each node still names its own
# snapshot file, since a shared name once let one replica load another shard's data),
# and prints the line that points the
# tests at it:
#   export LATCHKEY_TEST_REDIS_CLUSTER=redis-cluster://127.0.0.1:P1,127.0.0.1:P2,...
# Usage: eval "$(.ci/redis-cluster.sh)"     (stop it with: kill $(cat DIR/*.pid))
# The folder is printed too (LATCHKEY_TEST_REDIS_CLUSTER_DIR). A failover takes about
# `cluster-node-timeout` (1 s here) plus the election: two to three seconds.
set -euo pipefail

dir=$(mktemp -d /tmp/latchkey-redis-cluster.XXXXXX)

# A port that nothing listens on, with its cluster-bus port (+10000) free too. Both
# stay below Linux's ephemeral range (32768 and up), where an outgoing connection could
# hold the port without listening on it.
free_port() {
  local port taken=" ${ports[*]:-} "
  while :; do
    port=$((10000 + RANDOM % 12000))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null \
      && ! (exec 3<>/dev/tcp/127.0.0.1/$((port + 10000))) 2>/dev/null \
      && [[ $taken != *" $port "* && $taken != *" $((port + 10000)) "* \
        && $taken != *" $((port - 10000)) "* ]]; then
      echo "$port"
      return
    fi
  done
}

# Starts a node on a free port; another port if that one was taken meanwhile.
start_node() {
  local port
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
      --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
      --cluster-node-timeout 1000 --cluster-replica-validity-factor 0 \
      --cluster-require-full-coverage no \
      --save "" --appendonly no --dir "$dir" --dbfilename "dump-$port.rdb" \
      --repl-diskless-sync yes --repl-diskless-sync-delay 0 --repl-diskless-load on-empty-db \
      --pidfile "$dir/$port.pid" --logfile "$dir/$port.log" >/dev/null
    for _ in $(seq 100); do
      if redis-cli -p "$port" ping >/dev/null 2>&1; then
        ports+=("$port")
        return
      fi
      sleep 0.05
    done
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
