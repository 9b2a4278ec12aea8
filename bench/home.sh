#!/usr/bin/env bash
# Authenticated GET /home through latchkey (memory and SQLite stores) against a bare axum
# handler, measured with wrk in the same run: servers pinned to core 0, wrk to core 1,
# targets alternated round by round, median of the rounds reported with its ratio to
# the bare handler. The SQLite server is also asked with a personal access token
# (Authorization: Bearer lk_..., scope read) and with a bearer session (the session
# token as bearer); those two rows also get their ratio to the SQLite cookie row, the
# same server and store (issue 27: >= 0.9).
#
#   bench/home.sh [ROUNDS] [SECONDS]      (defaults: 5 rounds of 3 s, 32 connections)
#   CARGO_BUILD_JOBS=1 bench/home.sh ...  (build jobs, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
seconds="${2:-3}"

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi

cargo bench -j"${CARGO_BUILD_JOBS:-2}" --bench home_throughput --no-run 2>/dev/null
binary=$(ls -t target/release/deps/home_throughput-* | grep -v '\.d$' | head -n1)
addresses=$(mktemp)
BENCH_SERVE_ONLY=1 taskset -c 0 "$binary" --bench >"$addresses" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$addresses"' EXIT
for _ in $(seq 50); do grep -q '^bearer' "$addresses" && break; sleep 0.2; done

# Each line: name, address, then the whole header line to send (none for bare, which
# gets a cookie so that every request carries one credential header).
rows="bare memory sqlite token bearer"
declare -A url header
while read -r name address line; do
  url[$name]="http://$address/home"
  header[$name]="${line:-Cookie: x=1}"
done <"$addresses"
for name in $rows; do
  [ -n "${url[$name]:-}" ] || { echo "the bench binary printed no $name server" >&2; exit 1; }
done

declare -A rps p99
for round in $(seq "$rounds"); do
  for name in $rows; do
    out=$(taskset -c 1 wrk -t1 -c32 -d"${seconds}s" --latency -H "${header[$name]}" "${url[$name]}")
    if grep -q "Non-2xx" <<<"$out"; then echo "$name answered errors" >&2; exit 1; fi
    rps[$name]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") "
    p99[$name]+="$(awk '$1 == "99%" {v=$2; u=1; if (v ~ /us$/) u=0.001; else if (v ~ /ms$/) u=1; else if (v ~ /s$/) u=1000; sub(/[a-z]+$/, "", v); printf "%.3f", v*u}' <<<"$out") "
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
base=$(median <<<"${rps[bare]}")
cookie=$(median <<<"${rps[sqlite]}")
printf '\nGET /home, wrk -t1 -c32, median of %s rounds of %ss\n\n' "$rounds" "$seconds"
printf '%-32s %10s %12s %8s %10s\n' stack req/s "p99 ms" ratio "vs cookie"
for name in $rows; do
  r=$(median <<<"${rps[$name]}")
  case $name in
    bare) label="bare axum, no session layer" ;;
    token) label="SQLite, access token" ;;
    bearer) label="SQLite, bearer session" ;;
    *) label="latchkey, $name store" ;;
  esac
  to_cookie=""
  case $name in token | bearer) to_cookie=$(awk -v a="$r" -v b="$cookie" 'BEGIN {printf "%.2f", a/b}') ;; esac
  printf '%-32s %10.0f %12s %8.2f %10s\n' "$label" "$r" "$(median <<<"${p99[$name]}")" "$(awk -v a="$r" -v b="$base" 'BEGIN {print a/b}')" "$to_cookie"
done
echo "per-round req/s:"; for name in $rows; do echo "  $name: ${rps[$name]}"; done
# Round by round, token and bearer against the cookie row measured seconds before them.
per_round() {
  paste -d' ' <(tr ' ' '\n' <<<"${rps[$1]}" | grep -v '^$') <(tr ' ' '\n' <<<"${rps[sqlite]}" | grep -v '^$') |
    awk '{printf "%.2f ", $1/$2}'
}
for name in token bearer; do echo "  $name ÷ sqlite cookie, per round: $(per_round "$name")"; done
