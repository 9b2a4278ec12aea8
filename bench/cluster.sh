#!/usr/bin/env bash
# GET /home on a Redis Cluster (3 masters + 3 replicas from .ci/redis-cluster.sh)
# against axum-login's Redis store (tower-sessions' fred store, which takes one Redis
# server only) and latchkey on one Redis server, measured in the same rounds; then one
# latchkey process against two sharing the cluster.
#
#   bench/cluster.sh [ROUNDS] [SECONDS]        (defaults: 3 rounds of 10 s; median)
#
# Servers are pinned to core 0, wrk to core 1 (wrk -t1 -c32; for two servers, one wrk
# -c16 at each, at the same time, and their rates added). The Redis nodes are not
# pinned: they share both cores with everything else.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
seconds="${2:-10}"
redis="${LATCHKEY_TEST_REDIS:-redis://127.0.0.1:6379}"

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
cargo build -j2 --release -p latchkey-server --bin latchkey >&2
cargo build -j2 --release --manifest-path bench/peers/axum-login/Cargo.toml >&2

source bench/common.sh
eval "$(.ci/redis-cluster.sh)"
stop_cluster() { for pid in "$LATCHKEY_TEST_REDIS_CLUSTER_DIR"/*.pid; do kill -9 "$(cat "$pid")" 2>/dev/null || true; done; rm -rf "$LATCHKEY_TEST_REDIS_CLUSTER_DIR"; }
trap 'cleanup; stop_cluster' EXIT
cluster=$LATCHKEY_TEST_REDIS_CLUSTER

# start NAME PORT DATABASE_URL SESSION_STORE [FLAG...]: a latchkey server (core 0).
start() {
  local name=$1 port=$2 database=$3 store=$4
  shift 4
  LATCHKEY_SECRET_KEY="benchmark key that is at least thirty-two bytes" LATCHKEY_LOG=error \
    taskset -c 0 target/release/latchkey serve --bind "127.0.0.1:$port" --database-url "$database" \
    --session-store "$store" --login-ip-burst 1000000000 --login-ip-hourly 1000000000 \
    --signups-per-ip-hourly 1000000000 --new-sessions-per-ip-hourly 1000000000 "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
}

start cluster-1 18201 "sqlite://$work/one.db" "$cluster" --redis-prefix "bench-$$-one"
session_cookie 18201 >"$work/cluster-1.cookie"
start redis-1 18202 "sqlite://$work/redis.db" "$redis" --redis-prefix "bench-$$-redis"
session_cookie 18202 >"$work/redis-1.cookie"
LATCHKEY_BIND=127.0.0.1:18203 taskset -c 0 bench/peers/axum-login/target/release/axum-login-peer \
  "sqlite://$work/al.db" "$redis" >"$work/al.log" 2>&1 &
pids+=($!)
wait_port 18203
session_cookie 18203 >"$work/al.cookie"
# Two processes on the cluster, users in one shared SQLite file: a cookie from either
# works on both.
start cluster-2a 18204 "sqlite://$work/two.db" "$cluster" --redis-prefix "bench-$$-two"
start cluster-2b 18205 "sqlite://$work/two.db" "$cluster" --redis-prefix "bench-$$-two"
session_cookie 18204 >"$work/cluster-2.cookie"
for name in cluster-1 redis-1 al cluster-2; do
  [ -s "$work/$name.cookie" ] || { echo "$name: no session cookie" >&2; cat "$work"/*.log >&2; exit 1; }
done

# rate URL COOKIE CONNECTIONS -> requests per second (non-2xx answers stop the run).
rate() {
  local out
  out=$(taskset -c 1 wrk -t1 -c"$3" -d"${seconds}s" -H "Cookie: $2" "$1")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then echo "errors from $1:" >&2; echo "$out" >&2; exit 1; fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}

declare -A results
for round in $(seq "$rounds"); do
  for name in al redis-1 cluster-1; do
    port=$(case $name in al) echo 18203 ;; redis-1) echo 18202 ;; cluster-1) echo 18201 ;; esac)
    results[$name]+="$(rate "http://127.0.0.1:$port/home" "$(cat "$work/$name.cookie")" 32) "
  done
  cookie=$(cat "$work/cluster-2.cookie")
  rate http://127.0.0.1:18204/home "$cookie" 16 >"$work/a.rate" &
  first=$!
  rate http://127.0.0.1:18205/home "$cookie" 16 >"$work/b.rate"
  wait "$first"
  results[cluster-2]+="$(awk '{s += $1} END {printf "%.2f", s}' "$work/a.rate" "$work/b.rate") "
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{row[NR]=$0} END {print row[int((NR+1)/2)]}'; }
al=$(median <<<"${results[al]}")
printf '\nGET /home, logged in; median of %s rounds of %s s; servers on core 0, wrk on core 1\n' "$rounds" "$seconds"
printf '%-44s %10s %8s   %s\n' "server" "req/s" "÷ al" "rounds"
for name in al redis-1 cluster-1 cluster-2; do
  label=$(case $name in
    al) echo "axum-login, Redis store (one server)" ;;
    redis-1) echo "latchkey, Redis (one server)" ;;
    cluster-1) echo "latchkey, Redis Cluster, one process" ;;
    cluster-2) echo "latchkey, Redis Cluster, two processes" ;;
  esac)
  value=$(median <<<"${results[$name]}")
  printf '%-44s %10s %8s   %s\n' "$label" "$value" "$(awk -v a="$value" -v b="$al" 'BEGIN {printf "%.2f", a / b}')" "${results[$name]}"
done
