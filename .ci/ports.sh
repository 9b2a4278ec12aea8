# Port helpers for the service scripts (.ci/redis-cluster.sh, .ci/pgbouncer.sh), sourced.
# The allocation of port ranges (which range serves what, apart from the kernel's
# ephemeral ports) is the comment on `free_address` in
# crates/latchkey-server/tests/common/mod.rs.

# Fails unless FIRST..LAST lies outside the kernel's ephemeral range (ports it hands to
# outgoing connections, which can take a port between the check and the bind).
check_outside_ephemeral() {
  local first=$1 last=$2 low high
  [[ -r /proc/sys/net/ipv4/ip_local_port_range ]] || return 0
  read -r low high </proc/sys/net/ipv4/ip_local_port_range
  if ((first <= high && low <= last)); then
    echo "ports $first-$last overlap the kernel's ephemeral range $low-$high" \
      "(net.ipv4.ip_local_port_range): see crates/latchkey-server/tests/common/mod.rs" >&2
    return 1
  fi
}

# Whether something accepts connections on 127.0.0.1:PORT.
accepts() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Whether process PID itself listens on TCP PORT (read from /proc: a listener of another
# process on that port does not count).
owns_listener() {
  local pid=$1 port=$2 hex inode
  hex=$(printf '%04X' "$port")
  for inode in $(awk -v port=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == port { print $10 }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null); do
    if ls -l "/proc/$pid/fd" 2>/dev/null | grep -q "socket:\[$inode\]"; then
      return 0
    fi
  done
  return 1
}

# Waits up to SECONDS for process PID to listen on every one of PORTS itself. 0 when it
# does; 1 as soon as it has exited, or when it did not in time.
wait_for_listener() {
  local pid=$1 seconds=$2 port ok
  shift 2
  for _ in $(seq $((seconds * 20))); do
    kill -0 "$pid" 2>/dev/null || return 1
    ok=1
    for port in "$@"; do owns_listener "$pid" "$port" || ok=0; done
    [[ $ok == 1 ]] && return 0
    sleep 0.05
  done
  return 1
}
