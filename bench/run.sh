#!/usr/bin/env bash
# The performance table: `latchkey serve` on every session store against a bare axum
# server with the same routes and no auth (examples/bare_axum.rs) and against the stacks
# users would otherwise pick (bench/peers/): axum-login 0.18 + tower-sessions on the same
# stores (memory, SQLite, PostgreSQL, Redis), and Flask + Flask-Login + SQLite under
# gunicorn (one sync worker). All built here (Rust in release mode), measured in the
# same rounds.
#
#   bench/run.sh [ROUNDS] [SECONDS]        (defaults: 3 rounds of 10 s; median reported)
#
# BENCH_STORES="memory sqlite" limits the stores measured (default: all five; the
# axum-login peers follow it, cookie has none); BENCH_LOGIN=0 skips the POST /login
# rows (and the argon2id-alone row beside them); BENCH_PEERS=0 skips the peers;
# BENCH_CACHE=0 skips the PostgreSQL and Redis rows behind --session-cache. The
# Flask peer's venv is made from PyPI on the first run (bench/peers/flask/.venv).
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
peers="${BENCH_PEERS:-1}"
if [ "$peers" != 0 ]; then
  cargo build -j2 --release --manifest-path bench/peers/axum-login/Cargo.toml >&2
  bench/peers/flask/start.sh --setup
fi
# benches/hashing.rs: argon2id verifications per second on core 0, beside the login rows.
[ "${BENCH_LOGIN:-1}" != 0 ] && cargo bench -j2 --bench hashing --no-run >&2

source bench/common.sh

# start NAME PORT DATABASE_URL SESSION_STORE [FLAG...]: a latchkey server, with a user
# logged in.
start() {
  local name=$1 port=$2 database=$3 store=$4
  shift 4
  LATCHKEY_SECRET_KEY="benchmark key that is at least thirty-two bytes" LATCHKEY_LOG=error \
    taskset -c 0 target/release/latchkey serve --bind "127.0.0.1:$port" --database-url "$database" \
    --session-store "$store" --login-ip-burst 1000000000 --login-ip-hourly 1000000000 \
    --signups-per-ip-hourly 1000000000 --new-sessions-per-ip-hourly 1000000000 "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  log_in "$name" "$port"
}
# start_axum_login NAME PORT SESSION_STORE: the axum-login peer (users in a SQLite file).
start_axum_login() {
  local name=$1 port=$2 store=$3
  LATCHKEY_BIND="127.0.0.1:$port" taskset -c 0 bench/peers/axum-login/target/release/axum-login-peer \
    "sqlite://$work/$name.db" "$store" >"$work/$name.log" 2>&1 &
  pids+=($!)
  log_in "$name" "$port"
}
# start_flask NAME PORT: the Flask peer (gunicorn, one sync worker; users in SQLite).
start_flask() {
  local name=$1 port=$2
  FLASK_SECRET_KEY="benchmark key that is at least thirty-two bytes" \
    taskset -c 0 bench/peers/flask/start.sh "$port" "$work/$name.db" >"$work/$name.log" 2>&1 &
  pids+=($!)
  log_in "$name" "$port"
}
# log_in NAME PORT: signs $username up and logs in; the session cookie goes to
# $work/NAME.cookie and the username to $work/NAME.user.
log_in() {
  local name=$1 port=$2
  wait_port "$port"
  session_cookie "$port" >"$work/$name.cookie"
  echo "$username" >"$work/$name.user"
  [ -s "$work/$name.cookie" ] || { echo "$name: no session cookie" >&2; cat "$work/$name.log" >&2; exit 1; }
}

LATCHKEY_BENCH_USERNAME=$username LATCHKEY_BIND=127.0.0.1:18100 taskset -c 0 target/release/examples/bare_axum &
pids+=($!)
wait_port 18100
bare_cookie >"$work/bare.cookie"
echo "$username" >"$work/bare.user"
stores="${BENCH_STORES:-memory sqlite postgres redis cookie}"
targets="bare:18100"
for store in $stores; do
  case $store in
    memory)   start memory   18101 "sqlite://$work/memory.db" memory ;;
    sqlite)   start sqlite   18102 "sqlite://$work/sqlite.db" database ;;
    postgres) start postgres 18103 "$postgres" database ;;
    redis)    start redis    18104 "sqlite://$work/redis.db" "$redis" --redis-prefix "bench-$$-redis" ;;
    cookie)   start cookie   18105 "sqlite://$work/cookie.db" cookie ;;
    *) echo "unknown store $store" >&2; exit 1 ;;
  esac
  targets+=" $store:$(( 18101 + $(echo "memory sqlite postgres redis cookie" | tr ' ' '\n' | grep -n "^$store\$" | cut -d: -f1) - 1 ))"
done
# PostgreSQL and Redis again behind the cache tier, which the store's change
# announcements keep current (--session-cache; BENCH_CACHE=0 skips these rows).
if [ "${BENCH_CACHE:-1}" != 0 ]; then
  for store in $stores; do
    case $store in
      postgres) start postgres+cache 18106 "$postgres" database --session-cache 10m; targets+=" postgres+cache:18106" ;;
      redis)    start redis+cache 18107 "sqlite://$work/redis-cache.db" "$redis" --session-cache 10m --redis-prefix "bench-$$-redis-cache"; targets+=" redis+cache:18107" ;;
    esac
  done
fi
# The peers (named al-STORE for axum-login): the same stores, each its own server.
if [ "$peers" != 0 ]; then
  for store in $stores; do
    case $store in
      memory)   start_axum_login al-memory   18111 memory;      targets+=" al-memory:18111" ;;
      sqlite)   start_axum_login al-sqlite   18112 sqlite;      targets+=" al-sqlite:18112" ;;
      postgres) start_axum_login al-postgres 18113 "$postgres"; targets+=" al-postgres:18113" ;;
      redis)    start_axum_login al-redis    18114 "$redis";    targets+=" al-redis:18114" ;;
    esac
  done
  start_flask flask 18120
  targets+=" flask:18120"
fi

# measure URL COOKIE [SCRIPT] -> "req/s p50_ms p99_ms"
# Non-2xx answers stop the run (a server that answers errors measures nothing); socket
# errors (connect/read/write/timeout: the one-worker gunicorn queues 32 connections,
# and closes each after its answer) are noted in $work/socket-errors and printed at the
# end. wrk waits up to 10 s for an answer (its default, 2 s, is shorter than a Flask
# login queue).
measure() {
  local out
  out=$(taskset -c 1 wrk -t1 -c32 -d"${seconds}s" --timeout 10s --latency -H "Cookie: $2" ${3:+-s "$3"} "$1")
  if grep -q "Non-2xx" <<<"$out"; then echo "errors from $1:" >&2; echo "$out" >&2; exit 1; fi
  if grep -q "Socket errors" <<<"$out"; then
    echo "$1: $(grep "Socket errors" <<<"$out" | sed 's/^ *//'), of $(awk '/requests in/ {print $1}' <<<"$out") requests" >>"$work/socket-errors"
  fi
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
# Logins: the right password, as fast as the server takes them.
cat >"$work/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"USER","password":"$password"}'
LUA
declare -A logins
hashing=""
login_targets="bare:18100"
[[ " $stores " == *" sqlite "* && "${BENCH_LOGIN:-1}" != 0 ]] && login_targets+=" sqlite:18102"
[[ " $stores " == *" sqlite "* && "$peers" != 0 ]] && login_targets+=" al-sqlite:18112"
[ "$peers" != 0 ] && login_targets+=" flask:18120"
[ "${BENCH_LOGIN:-1}" = 0 ] && login_targets=""
for target in $login_targets; do
  name=${target%%:*}; port=${target##*:}
  sed "s/USER/$(cat "$work/$name.user")/" "$work/login.lua" >"$work/$name.lua"
  for round in $(seq "$rounds"); do
    logins[$name]+="$(measure "http://127.0.0.1:$port/login" "x=1" "$work/$name.lua")|"
    # What hashing alone allows on the same core, right after each latchkey round.
    if [ "$name" = sqlite ]; then
      hashing+="$(cargo bench -q --bench hashing -- "$seconds" 2>/dev/null \
        | awk '{for (i = 2; i <= NF; i++) if ($i == "verifications/s") print $(i - 1)}')|"
    fi
  done
done

# GET /home p99 while logins flood the same server (hashing must not starve requests):
# wrk on /home and a second wrk posting logins, both from core 1.
declare -A flood
flood_logins=""
if [ -n "$login_targets" ] && [[ " $stores " == *" sqlite "* ]]; then
  for round in $(seq "$rounds"); do
    taskset -c 1 wrk -t1 -c8 -d"$((seconds + 2))s" -s "$work/sqlite.lua" http://127.0.0.1:18102/login >"$work/flood.out" 2>&1 &
    flooder=$!
    sleep 1
    flood[sqlite]+="$(measure http://127.0.0.1:18102/home "$(cat "$work/sqlite.cookie")")|"
    wait "$flooder" || true
    # The flood's logins count only if they were served: every answer must be a 200
    # (racing right passwords wait for the account's slot, they are never refused).
    if grep -q "Non-2xx" "$work/flood.out"; then
      echo "the login flood got answers other than 200:" >&2; cat "$work/flood.out" >&2; exit 1
    fi
    flood_logins+="$(awk '/Requests\/sec/ {print $2}' "$work/flood.out")|"
  done
fi

label() {
  case $1 in
    bare) echo "bare axum, no auth" ;;
    al-*) echo "axum-login, ${1#al-} store" ;;
    flask) echo "Flask-Login, gunicorn, sqlite" ;;
    *+cache) echo "latchkey, ${1%+cache} + cache" ;;
    *) echo "latchkey, $1 store" ;;
  esac
}
median() { tr '|' '\n' | grep -v '^$' | sort -g -k1 | awk '{row[NR]=$0} END {print row[int((NR+1)/2)]}'; }
# median_column N: the median of field N over the rounds.
median_column() { tr '|' '\n' | grep -v '^$' | awk -v n="$1" '{print $n}' | sort -g | awk '{row[NR]=$0} END {print row[int((NR+1)/2)]}'; }
base=$(median <<<"${results[bare]}" | awk '{print $1}')
printf '\nGET /home with a logged-in cookie; wrk -t1 -c32 -d%ss, median of %s rounds; server on core 0, wrk on core 1\n' "$seconds" "$rounds"
printf '(× bare: ratio of the medians; per round: median of the same-round ratios)\n\n'
# per_round NAME: the median over the rounds of NAME's req/s ÷ bare axum's in the same
# round (each pair measured seconds apart, so the machine's slow spells, which last
# tens of seconds and shift the two medians apart, mostly cancel).
per_round() {
  paste -d' ' <(tr '|' '\n' <<<"${results[bare]}" | grep -v '^$' | awk '{print $1}') \
    <(tr '|' '\n' <<<"${results[$1]}" | grep -v '^$' | awk '{print $1}') \
    | awk '{print $2 / $1}' | sort -g | awk '{row[NR]=$0} END {print row[int((NR+1)/2)]}'
}
printf '| %-30s | %10s | %8s | %8s | %8s | %9s |\n' stack req/s "p50 ms" "p99 ms" "× bare" "per round"
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..32})" "------------" "----------" "----------" "----------" "-----------"
for target in $targets; do
  name=${target%%:*}
  read -r rps p50 p99 <<<"$(median <<<"${results[$name]}")"
  printf '| %-30s | %10.0f | %8s | %8s | %8.2f | %9.2f |\n' "$(label "$name")" "$rps" "$p50" "$p99" \
    "$(awk -v a="$rps" -v b="$base" 'BEGIN {print a/b}')" "$(per_round "$name")"
done
# latchkey against axum-login on the same session store (the issue's target: at least
# 3x on SQLite, PostgreSQL and Redis).
compared=""
for store in memory sqlite postgres postgres+cache redis redis+cache; do
  [ -n "${results[$store]:-}" ] && [ -n "${results[al-${store%+cache}]:-}" ] && compared+=" $store"
done
if [ -n "$compared" ]; then
  printf '\nlatchkey ÷ axum-login on the same store (GET /home, the medians above; p99 ratio is\naxum-login p99 ÷ latchkey p99, so above 1 is latchkey faster there too)\n\n'
  printf '| %-14s | %14s | %16s | %12s | %14s | %6s |\n' store "latchkey req/s" "axum-login req/s" "req/s ratio" "p99 ratio" target
  printf '|%s|%s|%s|%s|%s|%s|\n' "----------------" "----------------" "------------------" "--------------" "----------------" "--------"
  for store in $compared; do
    read -r rps _ p99 <<<"$(median <<<"${results[$store]}")"
    read -r peer_rps _ peer_p99 <<<"$(median <<<"${results[al-${store%+cache}]}")"
    printf '| %-14s | %14.0f | %16.0f | %11.2fx | %13.2fx | %6s |\n' "$store" "$rps" "$peer_rps" \
      "$(awk -v a="$rps" -v b="$peer_rps" 'BEGIN {print a/b}')" \
      "$(awk -v a="$peer_p99" -v b="$p99" 'BEGIN {print a/b}')" \
      "$([ "$store" = memory ] && echo - || echo ">= 3x")"
  done
fi
if [ -n "$login_targets" ]; then
  printf '\nPOST /login with the right password (argon2id m=19456 t=2 p=1 for latchkey and axum-login; werkzeug scrypt n=32768 r=8 p=1 for Flask)\n\n'
  printf '| %-30s | %10s | %8s | %8s |\n' stack req/s "p50 ms" "p99 ms"
  printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..32})" "------------" "----------" "----------"
fi
for target in $login_targets; do
  name=${target%%:*}
  read -r rps p50 p99 <<<"$(median <<<"${logins[$name]}")"
  case $name in
    bare) label="bare axum, no password check" ;;
    al-sqlite) label="axum-login, SQLite users" ;;
    flask) label="Flask-Login, SQLite users" ;;
    *) label="latchkey, SQLite users" ;;
  esac
  printf '| %-30s | %10.1f | %8s | %8s |\n' "$label" "$rps" "$p50" "$p99"
done
if [ -n "$hashing" ]; then
  read -r logins_per_second _ <<<"$(median <<<"${logins[sqlite]}")"
  per_second=$(median <<<"$hashing")
  printf '| %-30s | %10.1f | %8s | %8s |\n' "argon2id alone, one core" "$per_second" - -
  printf '\nlatchkey logins ÷ what hashing alone allows on the same core: %.2f (target ≥ 0.9)\n' \
    "$(awk -v a="$logins_per_second" -v b="$per_second" 'BEGIN {print a/b}')"
fi
if [ -n "${flood[sqlite]:-}" ]; then
  # The p99s compared are the medians of each round's p99 (the round of median req/s
  # can have any p99: the tail swings more than the rate between rounds).
  idle_p99=$(median_column 3 <<<"${results[sqlite]}")
  read -r rps p50 _ <<<"$(median <<<"${flood[sqlite]}")"
  p99=$(median_column 3 <<<"${flood[sqlite]}")
  printf '\nGET /home on the SQLite server during a login flood (8 connections posting the right password)\n\n'
  printf '| %-30s | %10s | %8s | %8s | %12s |\n' "" req/s "p50 ms" "p99 ms" "p99 × idle"
  printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..32})" "------------" "----------" "----------" "--------------"
  printf '| %-30s | %10s | %8s | %8s | %12s |\n' "idle (the rounds above)" - - "$idle_p99" 1.00
  printf '| %-30s | %10.0f | %8s | %8s | %12.2f |\n' "during the flood" "$rps" "$p50" "$p99" "$(awk -v a="$p99" -v b="$idle_p99" 'BEGIN {print a/b}')"
  printf '\nlogins served (200s only; the run stops on any other answer) during the flood, per round: %s\n' "$flood_logins"
fi
echo
for target in $targets; do name=${target%%:*}; echo "per-round $name: ${results[$name]}"; done
[ -n "${flood[sqlite]:-}" ] && echo "per-round sqlite during the login flood: ${flood[sqlite]}"
if [ -s "$work/socket-errors" ]; then
  echo; echo "wrk socket errors (the answers that came were all 2xx):"; sed 's/^/  /' "$work/socket-errors"
fi
