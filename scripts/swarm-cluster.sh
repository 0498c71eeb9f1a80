#!/usr/bin/env bash
# A real two-node Docker Swarm on one machine, plus a real TLS registry both
# nodes pull from, for end-to-end tests and benchmarks.
#
#   scripts/swarm-cluster.sh up     # build it (exit 0 at once if already up)
#   scripts/swarm-cluster.sh env    # export lines for tests: sockets, registry
#   scripts/swarm-cluster.sh down   # tear it all down; safe to repeat
#   scripts/swarm-cluster.sh link down|up
#                                   # cut node 2's link, as a pulled cable or
#                                   # a dead node does, and put it back
#
# Node 1 is the host's own dockerd (it becomes the manager). Node 2 is a
# second dockerd in its own network namespace, joined as a worker over a veth
# pair; it gets its own hostname (a UTS namespace) and both nodes get a
# polls.node=n1|n2 label, so constraints can name either one. The registry is
# Debian's docker-registry binary serving TLS (a CA made here, installed
# under /etc/docker/certs.d, which both daemons read) with htpasswd auth.
#
# Runs as root. Needs: iproute2 (ip), iptables, util-linux (nsenter,
# unshare), docker.io (dockerd, docker), openssl, docker-registry, and perl
# (perl-base, always present) for the bcrypt password hash.
#
# What this machine's kernel does not give the swarm: the ingress routing
# mesh and VIP load balancing (no IPVS). Use host-mode published ports and
# endpoint_mode: dnsrr. Privileged containers are refused.
set -euo pipefail

NETNS=${NETNS:-polls-n2}
HOST_ADDR=${HOST_ADDR:-10.231.0.1}
NODE_ADDR=${NODE_ADDR:-10.231.0.2}
N2_SOCK=${N2_SOCK:-/run/polls-n2/docker.sock}
N2_HOSTNAME=${N2_HOSTNAME:-$NETNS}
STATE=${STATE:-/tmp/polls-swarm}
REGISTRY_PORT=${REGISTRY_PORT:-5000}
REGISTRY_USER=${REGISTRY_USER:-polls}
# Interface names are limited to 15 characters, so these are not derived
# from NETNS.
VETH_HOST=${VETH_HOST:-polls-n2h}
VETH_NODE=${VETH_NODE:-polls-n2n}
# Image used by the end-of-up check; scripts/images.sh builds it.
CHECK_IMAGE=${CHECK_IMAGE:-polls-local/debian:bookworm}

REGISTRY=$HOST_ADDR:$REGISTRY_PORT
CERTS_D=/etc/docker/certs.d/$REGISTRY
N2_DIR=$STATE/n2
N2_PIDFILE=$N2_DIR/docker.pid
REG_DIR=$STATE/registry
REG_PIDFILE=$REG_DIR/registry.pid
PASSWORD_FILE=$STATE/registry.password
CHECK_NET=polls-swarm-check
CHECK_SVC=polls-swarm-check

t0=$EPOCHREALTIME
tlast=$t0
# Prints a step with the time it took since the previous one and in total.
step() {
  local now=$EPOCHREALTIME
  awk -v a="$tlast" -v b="$now" -v z="$t0" -v m="$*" \
    'BEGIN { printf "[%6.1fs +%5.1fs] %s\n", b - z, b - a, m }'
  tlast=$now
}
# fd 9 is the script's stderr even inside wait_for, which silences its command.
exec 9>&2
die() { echo "swarm-cluster: $*" >&9; exit 1; }
d1() { docker "$@"; }
d2() { docker -H "unix://$N2_SOCK" "$@"; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { cat "$1" 2>/dev/null || true; }

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local limit=$1 i=0
  shift
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -le "$((limit * 4))" ] || return 1
    sleep 0.25
  done
}

check_commands() {
  # command -> Debian package that provides it
  local -A pkg=([ip]=iproute2 [iptables]=iptables [nsenter]=util-linux
    [unshare]=util-linux [dockerd]=docker.io [docker]=docker.io
    [openssl]=openssl [docker-registry]=docker-registry [perl]=perl-base
    [awk]=mawk)
  local missing=() c
  for c in ip iptables nsenter unshare dockerd docker openssl docker-registry perl awk; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c (Debian package ${pkg[$c]})")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    printf 'swarm-cluster: missing command: %s\n' "${missing[@]}" >&2
    exit 2
  fi
  [ "$(id -u)" = 0 ] || { echo "swarm-cluster: must run as root" >&2; exit 2; }
  d1 info >/dev/null 2>&1 || {
    echo "swarm-cluster: host dockerd is not answering on its socket" \
      "(start it: dockerd >/tmp/dockerd.log 2>&1 &)" >&2
    exit 2
  }
}

swarm_state() { "$@" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true; }

# Fully up means: node 2 answers and is in the swarm, the host is a manager,
# and the registry is running.
is_up() {
  [ -S "$N2_SOCK" ] && [ "$(swarm_state d2)" = active ] &&
    [ "$(d1 info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null)" = true ] &&
    alive "$(pid_of "$REG_PIDFILE")"
}

# Anything of ours left from an earlier, unfinished run.
has_leftovers() {
  [ -e "$STATE" ] || [ -e "/var/run/netns/$NETNS" ] || [ -e "$CERTS_D" ] ||
    ip link show "$VETH_HOST" >/dev/null 2>&1
}

# ---- up --------------------------------------------------------------------

setup_network() {
  ip netns add "$NETNS"
  ip link add "$VETH_HOST" type veth peer name "$VETH_NODE"
  ip link set "$VETH_NODE" netns "$NETNS"
  ip addr add "$HOST_ADDR/24" dev "$VETH_HOST"
  ip link set "$VETH_HOST" up
  ip -n "$NETNS" link set lo up
  ip -n "$NETNS" addr add "$NODE_ADDR/24" dev "$VETH_NODE"
  ip -n "$NETNS" link set "$VETH_NODE" up
  # Everything the node reaches (manager, registry, the host's other
  # addresses) is on the host itself, so a default route via the host end is
  # enough: no NAT, nothing leaves the machine.
  ip -n "$NETNS" route add default via "$HOST_ADDR"
  # The host's INPUT policy may drop; swarm (2377/tcp, 7946/tcp+udp,
  # 4789/udp) and the registry come in on this link. FORWARD (docker sets its
  # policy to DROP) lets containers on the host's bridge reach the node, e.g.
  # a host-mode published port on node 2. ip_forward is already on wherever
  # dockerd runs.
  iptables -I INPUT -i "$VETH_HOST" -j ACCEPT
  iptables -I FORWARD -i "$VETH_HOST" -j ACCEPT
  iptables -I FORWARD -o "$VETH_HOST" -j ACCEPT
}

start_n2_daemon() {
  mkdir -p "$N2_DIR/data" "$N2_DIR/exec" "$(dirname "$N2_SOCK")"
  # Its own config file, so whatever /etc/docker/daemon.json says for the
  # host engine (hosts, data-root, ...) does not apply here; its own key
  # file, so the two engines do not share an engine ID.
  # (The key path has no command-line flag in 20.10, only this json key.)
  printf '{"deprecated-key-path": "%s"}\n' "$N2_DIR/key.json" >"$N2_DIR/daemon.json"
  # nsenter (not `ip netns exec`, which remounts /sys and hides cgroups) puts
  # it in the namespace; unshare --uts gives it its own hostname, which
  # becomes its swarm node name. No --insecure-registry: the registry is TLS.
  # --bridge none: no docker0 in the namespace; it only needs overlays.
  # shellcheck disable=SC2016 # $0 and $@ are for the inner sh
  setsid nsenter --net="/var/run/netns/$NETNS" -- \
    unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$N2_HOSTNAME" \
    dockerd \
    --config-file "$N2_DIR/daemon.json" \
    --data-root "$N2_DIR/data" \
    --exec-root "$N2_DIR/exec" \
    --pidfile "$N2_PIDFILE" \
    -H "unix://$N2_SOCK" \
    --bridge none \
    --cgroup-parent "$NETNS" \
    </dev/null >"$N2_DIR/dockerd.log" 2>&1 9>&- &
  # setsid, nsenter, unshare and sh all exec, so this is dockerd's pid.
  local pid=$!
  wait_for 60 n2_answers "$pid" ||
    die "node 2 dockerd did not answer on $N2_SOCK; see $N2_DIR/dockerd.log"
}

# True once node 2 answers; gives up early (exit 1 from die) if it died.
n2_answers() {
  alive "$1" || die "node 2 dockerd exited; see $N2_DIR/dockerd.log: $(tail -n 3 "$N2_DIR/dockerd.log")"
  d2 version
}

make_certs() {
  local c=$STATE/certs
  mkdir -p "$c"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=polls swarm test CA" \
    -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$HOST_ADDR" \
    -keyout "$c/registry.key" -out "$c/registry.csr" 2>/dev/null
  # Docker (Go) checks the IP SAN, not the CN.
  printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
    "$HOST_ADDR" >"$c/registry.ext"
  openssl x509 -req -in "$c/registry.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" \
    -CAcreateserial -days 30 -extfile "$c/registry.ext" -out "$c/registry.crt" 2>/dev/null
  # Both daemons read this path on every pull/push; no restart needed.
  mkdir -p "$CERTS_D"
  cp "$c/ca.crt" "$CERTS_D/ca.crt"
}

# bcrypt hash for htpasswd. The registry takes any $2?$ bcrypt; perl's crypt()
# is glibc/libxcrypt's, which does $2b$ on Debian 12, so no apache2-utils.
bcrypt() {
  PW=$1 perl -e '
    my @c = (".", "/", "A".."Z", "a".."z", "0".."9");
    my $salt = join "", map { $c[int rand 64] } 1..22;
    my $h = crypt($ENV{PW}, "\$2b\$10\$$salt");
    die "crypt() has no bcrypt here\n" unless defined $h && $h =~ /^\$2b\$/;
    print $h;'
}

start_registry() {
  mkdir -p "$REG_DIR/data"
  local pw
  pw=$(openssl rand -hex 16)
  (umask 077 && printf '%s\n' "$pw" >"$PASSWORD_FILE")
  printf '%s:%s\n' "$REGISTRY_USER" "$(bcrypt "$pw")" >"$REG_DIR/htpasswd"
  cat >"$REG_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  fields:
    service: polls-registry
storage:
  filesystem:
    rootdirectory: $REG_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
  secret: $(openssl rand -hex 16)
  tls:
    certificate: $STATE/certs/registry.crt
    key: $STATE/certs/registry.key
auth:
  htpasswd:
    realm: polls-registry
    path: $REG_DIR/htpasswd
EOF
  setsid docker-registry serve "$REG_DIR/config.yml" \
    </dev/null >"$REG_DIR/registry.log" 2>&1 9>&- &
  echo $! >"$REG_PIDFILE"
  wait_for 30 bash -c "exec 3<>/dev/tcp/$HOST_ADDR/$REGISTRY_PORT" ||
    die "registry not listening on $REGISTRY; see $REG_DIR/registry.log"
  # The CLI keeps credentials per user, not per daemon: one login serves
  # pushes to either engine and --with-registry-auth for services.
  local out
  out=$(d1 login "$REGISTRY" -u "$REGISTRY_USER" --password-stdin <"$PASSWORD_FILE" 2>&1) ||
    die "docker login $REGISTRY failed: $out"
}

form_swarm() {
  if [ "$(d1 info --format '{{.Swarm.ControlAvailable}}')" != true ]; then
    d1 swarm init --advertise-addr "$HOST_ADDR" >/dev/null
  fi
  local token
  token=$(d1 swarm join-token -q worker)
  d2 swarm join --advertise-addr "$NODE_ADDR" --token "$token" "$HOST_ADDR:2377" >/dev/null
  local n1 n2
  n1=$(d1 info --format '{{.Swarm.NodeID}}')
  n2=$(d2 info --format '{{.Swarm.NodeID}}')
  wait_for 60 node_ready "$n2" || die "node 2 did not become Ready; see $N2_DIR/dockerd.log"
  d1 node update --label-add polls.node=n1 "$n1" >/dev/null
  d1 node update --label-add polls.node=n2 "$n2" >/dev/null
}

node_ready() {
  [ "$(d1 node inspect "$1" --format '{{.Status.State}} {{.Spec.Availability}}')" = "ready active" ]
}

task_running() {
  d1 service ps "$CHECK_SVC" --filter desired-state=running \
    --format '{{.CurrentState}}' | grep -q '^Running'
}

# The whole path a test needs: push to the registry from the host, a worker
# pulls it with forwarded credentials, and a container on the host reaches the
# worker's task by name over an overlay.
verify() {
  local img=$REGISTRY/polls/debian:bookworm
  d1 image inspect "$CHECK_IMAGE" >/dev/null 2>&1 ||
    die "$CHECK_IMAGE missing; build it with scripts/images.sh"
  d1 tag "$CHECK_IMAGE" "$img"
  d1 push "$img" >/dev/null
  step "pushed $img"

  d1 network create -d overlay --attachable "$CHECK_NET" >/dev/null
  # The image is a minbase debootstrap: no nc, but perl is there. The task's
  # hostname is its node's, so the answer says where it ran.
  # shellcheck disable=SC2016 # perl code, not shell
  d1 service create --detach --with-registry-auth --name "$CHECK_SVC" \
    --network "$CHECK_NET" --endpoint-mode dnsrr \
    --constraint node.labels.polls.node==n2 --hostname '{{.Node.Hostname}}' \
    "$img" perl -MIO::Socket::INET -e '
      my $s = IO::Socket::INET->new(LocalPort => 8000, Listen => 5, ReuseAddr => 1) or die $!;
      while (my $c = $s->accept) { chomp(my $h = `hostname`); print $c "ok $h\n"; close $c }' \
    >/dev/null
  if ! wait_for 120 task_running; then
    d1 service ps --no-trunc "$CHECK_SVC" >&2 || true
    die "check service did not reach Running on node 2"
  fi
  step "service on node 2 pulled from the registry and is Running"

  local got
  got=$(d1 run --rm --network "$CHECK_NET" "$CHECK_IMAGE" bash -c "
    for i in \$(seq 60); do
      if r=\$(timeout 2 bash -c 'read -r l </dev/tcp/$CHECK_SVC/8000 && echo \"\$l\"' 2>/dev/null); then
        echo \"\$r\"; exit 0
      fi
      sleep 0.5
    done; exit 1") || true
  [ "$got" = "ok $N2_HOSTNAME" ] ||
    die "host container could not reach the node 2 task over the overlay (got '$got')"
  step "host container reached the node 2 task over the overlay: $got"

  d1 service rm "$CHECK_SVC" >/dev/null
  # The network goes once the task's attachment is released.
  wait_for 60 d1 network rm "$CHECK_NET" || echo "note: $CHECK_NET not removed yet" >&2
  d1 rmi "$img" >/dev/null
  step "check service and network removed"
}

cmd_up() {
  check_commands
  if is_up; then
    echo "swarm-cluster: already up (node 2 on $N2_SOCK, registry $REGISTRY)"
    exit 0
  fi
  if has_leftovers; then
    echo "swarm-cluster: found leftovers of an earlier run; cleaning them first"
    cmd_down
    t0=$EPOCHREALTIME tlast=$t0
  fi
  mkdir -p "$STATE"
  setup_network
  step "netns $NETNS: $VETH_HOST $HOST_ADDR <-> $VETH_NODE $NODE_ADDR"
  start_n2_daemon
  step "node 2 dockerd answering on $N2_SOCK"
  make_certs
  start_registry
  step "registry serving TLS on $REGISTRY, host engine logged in"
  form_swarm
  step "swarm formed: $(d1 node ls --format '{{.Hostname}}:{{.Status}}{{if .ManagerStatus}}/{{.ManagerStatus}}{{end}}' | tr '\n' ' ')"
  verify
  d1 node ls
  step "up"
}

# ---- down ------------------------------------------------------------------

# Stops a process we started, by its pid, and waits for it.
stop_pid() {
  local pid=$1 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 120); do
    alive "$pid" || return 0
    sleep 0.25
  done
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 20); do
    alive "$pid" || return 0
    sleep 0.25
  done
}

cmd_down() {
  [ "$(id -u)" = 0 ] || { echo "swarm-cluster: must run as root" >&2; exit 2; }
  if [ -S "$N2_SOCK" ] && [ "$(swarm_state d2)" != inactive ] && [ -n "$(swarm_state d2)" ]; then
    d2 swarm leave --force >/dev/null 2>&1 || true
  fi
  if [ "$(swarm_state d1)" != inactive ] && [ -n "$(swarm_state d1)" ]; then
    d1 swarm leave --force >/dev/null 2>&1 || true
  fi
  d1 logout "$REGISTRY" >/dev/null 2>&1 || true
  step "left the swarm"

  # dockerd stops the containerd it started; anything still running in the
  # namespace after that (only ever started by us) is stopped by pid too.
  stop_pid "$(pid_of "$N2_PIDFILE")"
  stop_pid "$(pid_of "$N2_DIR/exec/containerd/containerd.pid")"
  if [ -e "/var/run/netns/$NETNS" ]; then
    local p
    for p in $(ip netns pids "$NETNS" 2>/dev/null); do stop_pid "$p"; done
  fi
  stop_pid "$(pid_of "$REG_PIDFILE")"
  step "node 2 dockerd and registry stopped"

  # Rules may have been added more than once by an interrupted run.
  local rule
  for rule in "INPUT -i $VETH_HOST" "FORWARD -i $VETH_HOST" "FORWARD -o $VETH_HOST"; do
    # shellcheck disable=SC2086 # rule is a word list on purpose
    while iptables -C $rule -j ACCEPT 2>/dev/null; do iptables -D $rule -j ACCEPT; done
  done
  ip link del "$VETH_HOST" 2>/dev/null || true
  ip netns del "$NETNS" 2>/dev/null || true
  rm -rf "$CERTS_D"
  rmdir /etc/docker/certs.d 2>/dev/null || true

  # A daemon killed hard can leave overlay and netns mounts under its roots;
  # rm -rf must not walk into them.
  if [ -e "$STATE" ]; then
    local m
    awk -v s="$STATE/" 'index($5, s) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$STATE"
  fi
  rm -f "$N2_SOCK"
  rmdir "$(dirname "$N2_SOCK")" 2>/dev/null || true
  step "down: network, certs and $STATE removed"
}

# ---- env -------------------------------------------------------------------

cmd_env() {
  is_up || die "not up; run: $0 up"
  local n1 n2
  n1=$(d1 node inspect self --format '{{.Description.Hostname}}')
  n2=$(d2 info --format '{{.Name}}')
  printf 'export %s=%q\n' \
    POLLS_SWARM_N2_HOST "unix://$N2_SOCK" \
    POLLS_SWARM_N1_NODE "$n1" \
    POLLS_SWARM_N2_NODE "$n2" \
    POLLS_REGISTRY "$REGISTRY" \
    POLLS_REGISTRY_USER "$REGISTRY_USER" \
    POLLS_REGISTRY_PASSWORD "$(cat "$PASSWORD_FILE")" \
    POLLS_REGISTRY_CA "$STATE/certs/ca.crt"
}

# ---- link ------------------------------------------------------------------

# Takes node 2's end of the veth pair down or up. The host's end stays up
# with its address, as a manager's network card does when a worker's cable
# is pulled: the host keeps its advertise address and the registry, and
# what it sends to node 2 is lost, never refused.
cmd_link() {
  case "${1:-}" in
    down | up) ;;
    *) echo "usage: $0 link down|up" >&2; exit 64 ;;
  esac
  [ -e "/var/run/netns/$NETNS" ] || die "not up: no network namespace $NETNS"
  ip -n "$NETNS" link set "$VETH_NODE" "$1"
  if [ "$1" = up ]; then
    # The address and the default route went with the link.
    ip -n "$NETNS" addr replace "$NODE_ADDR/24" dev "$VETH_NODE"
    ip -n "$NETNS" route replace default via "$HOST_ADDR"
  fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  link) cmd_link "${2:-}" ;;
  *) echo "usage: $0 up|down|env|link down|up" >&2; exit 64 ;;
esac
