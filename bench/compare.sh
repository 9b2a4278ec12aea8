#!/usr/bin/env bash
# Compares builds of `latchkey` on the memory store against bare axum, in the same
# rounds: for checking a change to the hot path (build the binary before and after it,
# copy each somewhere, pass both).
#
#   bench/compare.sh ROUNDS SECONDS BINARY...
#
# bare axum (target/release/examples/bare_axum) and each BINARY serve on core 0, wrk
# -t1 -c32 runs on core 1 against `GET /home` with a logged-in cookie, one target after
# the other in each round. Prints each target's median req/s, the ratio of medians to
# bare axum, and the median of the per-round ratios (each round's latchkey figure over
# the bare figure of the same round, which cancels the machine's slow spells better).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=$1
seconds=$2
shift 2
[ -x target/release/examples/bare_axum ] || cargo build -j2 --release --example bare_axum >&2
source bench/common.sh

LATCHKEY_BENCH_USERNAME=$username LATCHKEY_BIND=127.0.0.1:18150 taskset -c 0 \
  target/release/examples/bare_axum >/dev/null 2>&1 &
pids+=($!)
wait_port 18150
names=(bare)
ports=(18150)
cookies=("$(bare_cookie)")
for binary in "$@"; do
  port=$((18150 + ${#ports[@]}))
  LATCHKEY_SECRET_KEY="benchmark key that is at least thirty-two bytes" LATCHKEY_LOG=error \
    taskset -c 0 "$binary" serve --bind "127.0.0.1:$port" --database-url "sqlite://$work/$port.db" \
    --session-store memory >"$work/$port.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
  cookie=$(session_cookie "$port")
  [ -n "$cookie" ] || { echo "$binary: no session cookie" >&2; cat "$work/$port.log" >&2; exit 1; }
  names+=("$binary")
  ports+=("$port")
  cookies+=("$cookie")
done

declare -A rates
for _ in $(seq "$rounds"); do
  for index in "${!ports[@]}"; do
    rates[$index]+="$(taskset -c 1 wrk -t1 -c32 -d"${seconds}s" -H "Cookie: ${cookies[$index]}" \
      "http://127.0.0.1:${ports[$index]}/home" | awk '/Requests\/sec/ {print $2}') "
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{row[NR] = $1} END {print row[int((NR + 1) / 2)]}'; }
base=$(median <<<"${rates[0]}")
for index in "${!ports[@]}"; do
  rate=$(median <<<"${rates[$index]}")
  paired=$(paste <(tr ' ' '\n' <<<"${rates[0]}") <(tr ' ' '\n' <<<"${rates[$index]}") \
    | awk 'NF == 2 {print $2 / $1}' | median)
  printf '%-28s %9.0f req/s   %.3f x bare   per-round %.3f x   [%s]\n' "${names[$index]}" \
    "$rate" "$(awk -v a="$rate" -v b="$base" 'BEGIN {print a / b}')" "$paired" "${rates[$index]% }"
done
