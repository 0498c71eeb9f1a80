#!/usr/bin/env bash
# A real off-host backup repository on one machine: Debian's OpenSSH sftp
# server in its own network namespace (its own "host", reached over a veth
# pair), for the end-to-end tests and benchmarks of backups.
#
#   scripts/sftp-server.sh up      # start it (exit 0 at once if already up)
#   scripts/sftp-server.sh env     # export lines: URL, key, host key, data dir
#   scripts/sftp-server.sh down    # stop it and remove everything; safe to repeat
#   scripts/sftp-server.sh stop    # stop sshd only: the repository is unreachable
#   scripts/sftp-server.sh start   # start sshd again after stop
#
# The server accepts one key, generated here, for root, chrooted into the
# data directory with internal-sftp only (no shell). Its host key is
# generated here too and printed as a known_hosts line, so clients pin it.
#
# Runs as root. Needs: iproute2 (ip), iptables, openssh-server (sshd),
# openssh-client (ssh-keygen).
set -euo pipefail

NETNS=${NETNS:-polls-sftp}
HOST_ADDR=${HOST_ADDR:-10.232.0.1}
SERVER_ADDR=${SERVER_ADDR:-10.232.0.2}
PORT=${PORT:-22}
STATE=${STATE:-/run/polls-sftp}
VETH_HOST=${VETH_HOST:-polls-sftph}
VETH_NODE=${VETH_NODE:-polls-sftpn}
DATA=$STATE/data
PIDFILE=$STATE/sshd.pid

die() { echo "sftp-server: $*" >&2; exit 1; }

check_commands() {
  local -A pkg=([ip]=iproute2 [iptables]=iptables [ssh-keygen]=openssh-client)
  local missing=() c
  for c in ip iptables ssh-keygen; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c (Debian package ${pkg[$c]})")
  done
  [ -x /usr/sbin/sshd ] || missing+=("/usr/sbin/sshd (Debian package openssh-server)")
  if [ ${#missing[@]} -gt 0 ]; then
    printf 'sftp-server: missing command: %s\n' "${missing[@]}" >&2
    exit 2
  fi
  [ "$(id -u)" = 0 ] || { echo "sftp-server: must run as root" >&2; exit 2; }
}

alive() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start_sshd() {
  alive && return 0
  # sshd wants its privilege separation directory.
  mkdir -p /run/sshd
  ip netns exec "$NETNS" /usr/sbin/sshd -f "$STATE/sshd_config" -E "$STATE/sshd.log"
  for _ in $(seq 40); do
    alive && return 0
    sleep 0.25
  done
  die "sshd did not start; see $STATE/sshd.log: $(tail -n 3 "$STATE/sshd.log" 2>/dev/null)"
}

up() {
  check_commands
  if [ -e "$STATE/up" ]; then
    start_sshd
    return 0
  fi
  down >/dev/null 2>&1 || true
  mkdir -p "$STATE" "$DATA/backups"
  # ChrootDirectory must be root's and not writable by others; the
  # repository is a directory inside it.
  chmod 755 "$STATE" "$DATA"
  ssh-keygen -q -t ed25519 -N '' -C polls-sftp-host -f "$STATE/host_key"
  ssh-keygen -q -t ed25519 -N '' -C polls-backup -f "$STATE/client_key"
  cp "$STATE/client_key.pub" "$STATE/authorized_keys"
  chmod 600 "$STATE/authorized_keys"
  cat >"$STATE/sshd_config" <<EOF
ListenAddress $SERVER_ADDR:$PORT
HostKey $STATE/host_key
PidFile $PIDFILE
AuthorizedKeysFile $STATE/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
Match User root
    ChrootDirectory $DATA
    ForceCommand internal-sftp
    AllowTcpForwarding no
    X11Forwarding no
EOF
  ip netns add "$NETNS"
  ip link add "$VETH_HOST" type veth peer name "$VETH_NODE"
  ip link set "$VETH_NODE" netns "$NETNS"
  ip addr add "$HOST_ADDR/24" dev "$VETH_HOST"
  ip link set "$VETH_HOST" up
  ip -n "$NETNS" link set lo up
  ip -n "$NETNS" addr add "$SERVER_ADDR/24" dev "$VETH_NODE"
  ip -n "$NETNS" link set "$VETH_NODE" up
  ip -n "$NETNS" route add default via "$HOST_ADDR"
  # Containers on Docker's bridges reach the server through the host
  # (docker masquerades their traffic); Docker's FORWARD policy drops the
  # rest.
  iptables -I FORWARD -i "$VETH_HOST" -j ACCEPT
  iptables -I FORWARD -o "$VETH_HOST" -j ACCEPT
  iptables -I INPUT -i "$VETH_HOST" -j ACCEPT
  start_sshd
  touch "$STATE/up"
  echo "sftp-server: sftp://root@$SERVER_ADDR:$PORT/backups up (key $STATE/client_key)"
}

env_lines() {
  [ -e "$STATE/up" ] || die "not up: run $0 up"
  printf "export POLLS_SFTP_URL='sftp://root@%s:%s/backups'\n" "$SERVER_ADDR" "$PORT"
  printf "export POLLS_SFTP_KEY_FILE='%s'\n" "$STATE/client_key"
  printf "export POLLS_SFTP_KNOWN_HOSTS='%s'\n" "$(printf '%s %s' "$SERVER_ADDR" "$(cut -d' ' -f1,2 "$STATE/host_key.pub")")"
  printf "export POLLS_SFTP_DATA='%s'\n" "$DATA/backups"
}

# stop_sshd stops the server and every session it has open (each sshd
# session is a process of its own, which outlives the listening one): every
# process in the namespace is the server's.
stop_sshd() {
  local pids
  pids=$(ip netns pids "$NETNS" 2>/dev/null || true)
  # shellcheck disable=SC2086 # one argument per pid
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  for _ in $(seq 40); do [ -z "$(ip netns pids "$NETNS" 2>/dev/null)" ] && break; sleep 0.25; done
  rm -f "$PIDFILE"
}

down() {
  stop_sshd
  iptables -D FORWARD -i "$VETH_HOST" -j ACCEPT 2>/dev/null || true
  iptables -D FORWARD -o "$VETH_HOST" -j ACCEPT 2>/dev/null || true
  iptables -D INPUT -i "$VETH_HOST" -j ACCEPT 2>/dev/null || true
  ip link del "$VETH_HOST" 2>/dev/null || true
  ip netns del "$NETNS" 2>/dev/null || true
  rm -rf "$STATE"
}

case "${1:-}" in
up) up ;;
env) env_lines ;;
down) down ;;
stop) stop_sshd ;;
start) start_sshd ;;
*) echo "usage: $0 up | env | down | stop | start" >&2; exit 2 ;;
esac
