#!/usr/bin/env bash
# Anonymous page views cost no server state: a flood of `GET /login` (as a browser, no
# cookie jar) against `latchkey serve`, on SQLite and on the memory store, while a
# logged-in `GET /home` is measured beside it.
#
#   bench/flood.sh [SECONDS]          (default 60)
#
# For each store: the logged-in GET /home p99 alone (wrk -t1 -c32, SECONDS/6 s), then the
# flood (wrk -t1 -c8 on GET /login with Accept: text/html for SECONDS, the shape of
# bench/run.sh's login flood) with the same GET /home measurement running inside it. Prints the flood's requests, the growth of
# the SQLite files (database + WAL) and of the server's resident memory, the rows in
# the sessions table, and the /home p99 alone and under the flood. Server on core 0,
# both wrk on core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
probe=$((seconds / 6))
[ "$probe" -ge 5 ] || probe=5
if ! command -v wrk >/dev/null; then
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
if ! command -v sqlite3 >/dev/null; then
  apt-get install -y sqlite3 >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y sqlite3 >/dev/null; }
fi
cargo build -j2 --release -p latchkey-server --bin latchkey >&2
source bench/common.sh

# p99_ms URL COOKIE SECONDS [CONNECTIONS]: the p99 latency of GET URL, in ms.
p99_ms() {
  taskset -c 1 wrk -t1 -c"${4:-32}" -d"$3s" --latency -H "Cookie: $2" -H 'Accept: application/json' "$1" \
    | awk '$1 == "99%" {v=$2; u=1; if (v ~ /us$/) u=0.001; else if (v ~ /ms$/) u=1; else if (v ~ /s$/) u=1000; sub(/[a-z]+$/, "", v); printf "%.3f", v*u}'
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
files_kib() { du -sk "$work"/flood-"$1".db* 2>/dev/null | awk '{s += $1} END {print s + 0}'; }

printf 'store    flood req   flood req/s   db+wal growth KiB   RSS growth KiB   session rows   /home p99 alone ms   /home p99 in flood ms\n'
for store in database memory; do
  port=$((18200 + ${#pids[@]}))
  LATCHKEY_SECRET_KEY="benchmark key that is at least thirty-two bytes" LATCHKEY_LOG=error \
    taskset -c 0 target/release/latchkey serve --bind "127.0.0.1:$port" \
    --database-url "sqlite://$work/flood-$store.db" --session-store "$store" \
    >"$work/$store.log" 2>&1 &
  server=$!
  pids+=($server)
  wait_port "$port"
  cookie=$(session_cookie "$port")
  [ -n "$cookie" ] || { echo "$store: no session cookie" >&2; cat "$work/$store.log" >&2; exit 1; }
  url="http://127.0.0.1:$port"
  alone=$(p99_ms "$url/home" "$cookie" "$probe")
  sqlite3 "$work/flood-$store.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
  files_before=$(files_kib "$store")
  rss_before=$(rss_kib "$server")
  rows_before=$(sqlite3 "$work/flood-$store.db" 'SELECT COUNT(*) FROM sessions')
  flood_out="$work/flood-$store.out"
  taskset -c 1 wrk -t1 -c8 -d"${seconds}s" -H 'Accept: text/html' "$url/login" >"$flood_out" 2>&1 &
  flooder=$!
  sleep $(( (seconds - probe) / 2 ))
  under=$(p99_ms "$url/home" "$cookie" "$probe")
  wait "$flooder"
  grep -q "Non-2xx" "$flood_out" && { echo "$store: the flood got errors" >&2; cat "$flood_out" >&2; exit 1; }
  requests=$(awk '/requests in/ {print $1}' "$flood_out")
  rate=$(awk '/Requests\/sec/ {print $2}' "$flood_out")
  files_after=$(files_kib "$store")
  rss_after=$(rss_kib "$server")
  rows_after=$(sqlite3 "$work/flood-$store.db" 'SELECT COUNT(*) FROM sessions')
  printf '%-8s %10s %13s %19s %16s %14s %20s %23s\n' "$store" "$requests" "$rate" \
    "$((files_after - files_before))" "$((rss_after - rss_before))" \
    "$rows_before -> $rows_after" "$alone" "$under"
  kill "$server"
done
