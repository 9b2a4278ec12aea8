# Shared by bench/run.sh and bench/compare.sh (sourced, from the repository root).

# A scratch directory and the servers started, both gone when the script exits.
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# wait_port PORT: returns once something listens on PORT (10 s at most).
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

password="correct horse battery staple"
# One user name for every server (each has its own users, but the PostgreSQL rows share
# a database, where a second sign-up of the name is refused and the login still works),
# and bare axum greets the same name: every server sends the same bytes.
username="foo$(printf '%06d' $((RANDOM * 32768 + RANDOM)) | tail -c 6)"

# session_cookie PORT: signs $username up on the server at PORT, logs in, and prints the
# session cookie (`id=…`; named id on every server), or nothing.
session_cookie() {
  local body="{\"username\":\"$username\",\"password\":\"$password\"}"
  curl -s -o /dev/null -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$1/signup"
  curl -s -D - -o /dev/null -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$1/login" \
    | tr -d '\r' | awk -F'[ ;]' 'tolower($1) == "set-cookie:" && $2 ~ /^id=/ {print $2}'
}

# A session-shaped cookie (43 base64url characters) for bare axum, which ignores it: the
# same request bytes as latchkey's.
bare_cookie() { echo "id=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"; }
