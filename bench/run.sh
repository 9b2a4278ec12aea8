#!/usr/bin/env bash
# The performance table: `latchkey serve` on every session store against a bare axum
# server with the same routes and no auth (examples/bare_axum.rs), all built here in
# release mode, measured in the same run.
#
#   bench/run.sh [ROUNDS] [SECONDS]        (defaults: 3 rounds of 10 s; median reported)
#
# BENCH_STORES="memory sqlite" limits the stores measured (default: all five);
# BENCH_LOGIN=0 skips the POST /login rows.
#
# Servers are pinned to core 0 and wrk to core 1 (wrk -t1 -c32). GET /home carries a
# logged-in session cookie; POST /login sends the right password (argon2id at the
# OWASP parameters, so it measures hashing). PostgreSQL and Redis come from
# LATCHKEY_TEST_POSTGRES / LATCHKEY_TEST_REDIS (defaults: this machine's servers).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
seconds="${2:-10}"
postgres="${LATCHKEY_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
redis="${LATCHKEY_TEST_REDIS:-redis://127.0.0.1:6379}"

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
cargo build -j2 --release -p latchkey-server --bin latchkey >&2
cargo build -j2 --release --example bare_axum >&2

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

password="correct horse battery staple"
# start NAME PORT DATABASE_URL SESSION_STORE: a latchkey server, with user foo logged in;
# its cookie goes to $work/NAME.cookie.
start() {
  local name=$1 port=$2 database=$3 store=$4
  LATCHKEY_SECRET_KEY="benchmark key that is at least thirty-two bytes" LATCHKEY_LOG=error \
    taskset -c 0 target/release/latchkey serve --bind "127.0.0.1:$port" --database-url "$database" \
    --session-store "$store" --login-ip-burst 1000000000 --login-ip-hourly 1000000000 \
    --signups-per-ip-hourly 1000000000 >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
  local user="foo$RANDOM$RANDOM"
  curl -s -o /dev/null -H 'content-type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"$password\"}" "http://127.0.0.1:$port/signup"
  curl -s -D - -o /dev/null -H 'content-type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"$password\"}" "http://127.0.0.1:$port/login" \
    | tr -d '\r' | awk -F'[ ;]' 'tolower($1) == "set-cookie:" && $2 ~ /^id=/ {print $2}' >"$work/$name.cookie"
  echo "$user" >"$work/$name.user"
  [ -s "$work/$name.cookie" ] || { echo "$name: no session cookie" >&2; cat "$work/$name.log" >&2; exit 1; }
}

LATCHKEY_BIND=127.0.0.1:18100 taskset -c 0 target/release/examples/bare_axum &
pids+=($!)
wait_port 18100
echo "x=1" >"$work/bare.cookie"; echo foo >"$work/bare.user"
stores="${BENCH_STORES:-memory sqlite postgres redis cookie}"
targets="bare:18100"
for store in $stores; do
  case $store in
    memory)   start memory   18101 "sqlite://$work/memory.db" memory ;;
    sqlite)   start sqlite   18102 "sqlite://$work/sqlite.db" database ;;
    postgres) start postgres 18103 "$postgres" database ;;
    redis)    start redis    18104 "sqlite://$work/redis.db" "$redis" ;;
    cookie)   start cookie   18105 "sqlite://$work/cookie.db" cookie ;;
    *) echo "unknown store $store" >&2; exit 1 ;;
  esac
  targets+=" $store:$(( 18101 + $(echo "memory sqlite postgres redis cookie" | tr ' ' '\n' | grep -n "^$store\$" | cut -d: -f1) - 1 ))"
done

# measure URL COOKIE [SCRIPT] -> "req/s p50_ms p99_ms"
measure() {
  local out
  out=$(taskset -c 1 wrk -t1 -c32 -d"${seconds}s" --latency -H "Cookie: $2" ${3:+-s "$3"} "$1")
  if grep -q "Non-2xx" <<<"$out"; then echo "errors from $1:" >&2; echo "$out" >&2; exit 1; fi
  local ms='{v=$2; u=1; if (v ~ /us$/) u=0.001; else if (v ~ /ms$/) u=1; else if (v ~ /s$/) u=1000; sub(/[a-z]+$/, "", v); printf "%.3f", v*u}'
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk "\$1 == \"50%\" $ms" <<<"$out") $(awk "\$1 == \"99%\" $ms" <<<"$out")"
}

declare -A results
for round in $(seq "$rounds"); do
  for target in $targets; do
    name=${target%%:*}; port=${target##*:}
    results[$name]+="$(measure "http://127.0.0.1:$port/home" "$(cat "$work/$name.cookie")")|"
  done
done
# Logins: the right password for foo, as fast as the server takes them.
cat >"$work/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"USER","password":"$password"}'
LUA
declare -A logins
login_targets="bare:18100"
[[ " $stores " == *" sqlite "* && "${BENCH_LOGIN:-1}" != 0 ]] && login_targets+=" sqlite:18102"
[ "${BENCH_LOGIN:-1}" = 0 ] && login_targets=""
for target in $login_targets; do
  name=${target%%:*}; port=${target##*:}
  sed "s/USER/$(cat "$work/$name.user")/" "$work/login.lua" >"$work/$name.lua"
  for round in $(seq "$rounds"); do
    logins[$name]+="$(measure "http://127.0.0.1:$port/login" "x=1" "$work/$name.lua")|"
  done
done

# GET /home p99 while logins flood the same server (hashing must not starve requests):
# wrk on /home and a second wrk posting logins, both from core 1.
declare -A flood
if [ -n "$login_targets" ] && [[ " $stores " == *" sqlite "* ]]; then
  for round in $(seq "$rounds"); do
    taskset -c 1 wrk -t1 -c8 -d"$((seconds + 2))s" -s "$work/sqlite.lua" http://127.0.0.1:18102/login >/dev/null 2>&1 &
    flooder=$!
    sleep 1
    flood[sqlite]+="$(measure http://127.0.0.1:18102/home "$(cat "$work/sqlite.cookie")")|"
    wait "$flooder" || true
  done
fi

median() { tr '|' '\n' | grep -v '^$' | sort -g -k1 | awk '{row[NR]=$0} END {print row[int((NR+1)/2)]}'; }
base=$(median <<<"${results[bare]}" | awk '{print $1}')
printf '\nGET /home with a logged-in cookie; wrk -t1 -c32 -d%ss, median of %s rounds; server on core 0, wrk on core 1\n\n' "$seconds" "$rounds"
printf '| %-28s | %10s | %8s | %8s | %8s |\n' stack req/s "p50 ms" "p99 ms" "× bare"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..30})" "------------" "----------" "----------" "----------"
for target in $targets; do
  name=${target%%:*}
  read -r rps p50 p99 <<<"$(median <<<"${results[$name]}")"
  label=$([ "$name" = bare ] && echo "bare axum, no auth" || echo "latchkey, $name store")
  printf '| %-28s | %10.0f | %8s | %8s | %8.2f |\n' "$label" "$rps" "$p50" "$p99" "$(awk -v a="$rps" -v b="$base" 'BEGIN {print a/b}')"
done
printf '\nPOST /login with the right password (argon2id m=19456 t=2 p=1 for latchkey)\n\n'
printf '| %-28s | %10s | %8s | %8s |\n' stack req/s "p50 ms" "p99 ms"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..30})" "------------" "----------" "----------"
for target in $login_targets; do
  name=${target%%:*}
  read -r rps p50 p99 <<<"$(median <<<"${logins[$name]}")"
  label=$([ "$name" = bare ] && echo "bare axum, no password check" || echo "latchkey, SQLite users")
  printf '| %-28s | %10.1f | %8s | %8s |\n' "$label" "$rps" "$p50" "$p99"
done
if [ -n "${flood[sqlite]:-}" ]; then
  read -r _ _ idle_p99 <<<"$(median <<<"${results[sqlite]}")"
  read -r rps p50 p99 <<<"$(median <<<"${flood[sqlite]}")"
  printf '\nGET /home on the SQLite server during a login flood (8 connections posting the right password)\n\n'
  printf '| %-28s | %10s | %8s | %8s | %12s |\n' "" req/s "p50 ms" "p99 ms" "p99 × idle"
  printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..30})" "------------" "----------" "----------" "--------------"
  printf '| %-28s | %10.0f | %8s | %8s | %12.2f |\n' "during the flood" "$rps" "$p50" "$p99" "$(awk -v a="$p99" -v b="$idle_p99" 'BEGIN {print a/b}')"
fi
echo
for target in $targets; do name=${target%%:*}; echo "per-round $name: ${results[$name]}"; done
