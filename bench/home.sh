#!/usr/bin/env bash
# Authenticated GET /home through latchkey (memory and SQLite stores) against a bare axum
# handler, measured with wrk in the same run: servers pinned to core 0, wrk to core 1,
# targets alternated round by round, median of the rounds reported with its ratio to
# the bare handler.
#
#   bench/home.sh [ROUNDS] [SECONDS]      (defaults: 5 rounds of 3 s, 32 connections)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
seconds="${2:-3}"

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi

cargo bench -j2 --bench home_throughput --no-run 2>/dev/null
binary=$(ls -t target/release/deps/home_throughput-* | grep -v '\.d$' | head -n1)
addresses=$(mktemp)
BENCH_SERVE_ONLY=1 taskset -c 0 "$binary" --bench >"$addresses" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$addresses"' EXIT
for _ in $(seq 50); do grep -q '^sqlite' "$addresses" && break; sleep 0.2; done

declare -A url cookie
while read -r name address token; do
  url[$name]="http://$address/home"
  cookie[$name]="${token:-x=1}"
done <"$addresses"

declare -A rps p99
for round in $(seq "$rounds"); do
  for name in bare memory sqlite; do
    out=$(taskset -c 1 wrk -t1 -c32 -d"${seconds}s" --latency -H "Cookie: ${cookie[$name]}" "${url[$name]}")
    if grep -q "Non-2xx" <<<"$out"; then echo "$name answered errors" >&2; exit 1; fi
    rps[$name]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") "
    p99[$name]+="$(awk '$1 == "99%" {v=$2; u=1; if (v ~ /us$/) u=0.001; else if (v ~ /ms$/) u=1; else if (v ~ /s$/) u=1000; sub(/[a-z]+$/, "", v); printf "%.3f", v*u}' <<<"$out") "
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
base=$(median <<<"${rps[bare]}")
printf '\nGET /home, wrk -t1 -c32, median of %s rounds of %ss\n\n' "$rounds" "$seconds"
printf '%-32s %10s %12s %8s\n' stack req/s "p99 ms" ratio
for name in bare memory sqlite; do
  r=$(median <<<"${rps[$name]}")
  label=$([ "$name" = bare ] && echo "bare axum, no session layer" || echo "latchkey, $name store")
  printf '%-32s %10.0f %12s %8.2f\n' "$label" "$r" "$(median <<<"${p99[$name]}")" "$(awk -v a="$r" -v b="$base" 'BEGIN {print a/b}')"
done
echo "per-round req/s:"; for name in bare memory sqlite; do echo "  $name: ${rps[$name]}"; done
