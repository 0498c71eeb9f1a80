#!/usr/bin/env bash
# What backups cost and how fast they bring data back, measured on this
# machine in one run (make bench-backup):
#
#   idle cost      N tenants (BENCH_N, default 5) with backups off, then the
#                  same stack with backups on, once the agents have sent
#                  what the base backups' checkpoints wrote: the memory of
#                  the stack's containers (resident, and as docker stats
#                  counts it) and the CPU they, dockerd and containerd
#                  spend over 120 s of idleness, from the cgroups; the
#                  difference is what backups add, per tenant (the agents,
#                  the databases' log streaming), and
#                  once per stack (the repository gateway)
#   1 GiB tenant   t01 filled to about 1 GiB with pgbench -i: a base backup
#                  (polls-agent backup now, as the agent times it), a drill
#                  (the latest backup restored into a scratch database:
#                  fetch and unpack, then recovery), and an in-place restore
#                  to latest through `pulumi up`, until t01 answers again
#   RPO            a steady write load on t01 (pgbench, 20 transactions a
#                  second) while three drills run 20 s apart: each measures
#                  how much of the live database's commits the restored
#                  copy lacks
#
# The repository is a directory of the run (the default kind of
# repository). Needs what the e2e test needs: a Docker engine, the local
# images (scripts/images.sh), the Pulumi CLI with its Go language host and
# the docker 4.10.0 and random 4.19.0 plugins, go, curl and python3.
# Everything it creates is removed on exit.
set -euo pipefail
export LC_ALL=C PULUMI_SKIP_UPDATE_CHECK=1 PULUMI_PARALLEL=${PULUMI_PARALLEL:-64} GOGC=${GOGC:-400}
cd "$(dirname "$0")/.."
root=$PWD
n=${BENCH_N:-5}
images=(polls-local/postgres:15 polls-local/nginx:1 polls-local/golang:1.26 polls-local/static:bookworm)

die() {
  echo "bench-backup: $*" >&2
  exit 1
}

missing=()
for tool in curl go python3 pulumi pulumi-language-go docker; do
  command -v "$tool" >/dev/null || missing+=("$tool on PATH")
done
if docker info >/dev/null 2>&1; then
  for img in "${images[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 || missing+=("image $img (run scripts/images.sh)")
  done
else
  missing+=("a running Docker engine")
fi
if ((${#missing[@]})); then
  printf -v list '\n  - %s' "${missing[@]}"
  die "cannot run, missing:$list"
fi

work=$(mktemp -d /tmp/bench-backup.XXXXXX)
log=$work/bench.log
src=$work/src
stack=bb$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
prefix=polls-$stack
export PULUMI_BACKEND_URL=file://$work/state
PULUMI_CONFIG_PASSPHRASE=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
export PULUMI_CONFIG_PASSPHRASE
proxy="" goproxy="" hammer="" loadpid=""

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  [ -n "$loadpid" ] && kill "$loadpid" 2>/dev/null
  if [ "$status" -ne 0 ]; then
    echo "bench-backup: failed; last lines of the log:" >&2
    tail -n 30 "$log" >&2
  fi
  pulumi -C "$src" destroy --yes --skip-preview -s "$stack" >>"$log" 2>&1
  pulumi -C "$src" stack rm --yes --force -s "$stack" >>"$log" 2>&1
  docker ps -aq --filter "label=polls.stack=$prefix" | xargs -r docker rm -f >>"$log" 2>&1
  docker volume ls -q | grep "^$prefix-" | xargs -r docker volume rm >>"$log" 2>&1
  docker image rm "$prefix-app:latest" "$prefix-db:latest" "$prefix-agent:latest" >>"$log" 2>&1
  [ -n "$proxy" ] && kill "$proxy" 2>/dev/null && wait "$proxy" 2>/dev/null
  [ -z "${BENCH_LOG:-}" ] || cp "$log" "$BENCH_LOG"
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"

note() { printf '  %-52s %s\n' "$1" "$2"; }

# sample prints, for each running container of the stack, "c TENANT
# CPU-NS WORKING-SET RESIDENT" (TENANT "-" for the stack's shared
# containers: the router, the backup gateway), then "e TICKS" for dockerd,
# containerd and the shims (where Docker's health checks cost) and "h
# TICKS" for the whole host. WORKING-SET is what `docker stats` shows (the
# cgroup's usage less its inactive file cache); RESIDENT is its anonymous
# and shared memory, what no memory pressure takes back (file cache, such
# as the data files a base backup read, is left out). cgroup v1 or v2 with
# Docker's cgroupfs layout.
sample() {
  local id tenant cpu ws res d
  for id in $(docker ps -q --no-trunc --filter "label=polls.stack=$prefix"); do
    tenant=$(docker inspect -f '{{index .Config.Labels "polls.tenant"}}' "$id")
    if [ -d "/sys/fs/cgroup/memory/docker/$id" ]; then
      cpu=$(cat "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage")
      d=/sys/fs/cgroup/memory/docker/$id
      ws=$(awk -v u="$(cat "$d/memory.usage_in_bytes")" '$1 == "total_inactive_file" { print u - $2 }' "$d/memory.stat")
      res=$(awk '$1 == "total_rss" || $1 == "total_shmem" { s += $2 } END { print s }' "$d/memory.stat")
    elif [ -d "/sys/fs/cgroup/docker/$id" ]; then
      d=/sys/fs/cgroup/docker/$id
      cpu=$(awk '$1 == "usage_usec" { print $2 * 1000 }' "$d/cpu.stat")
      ws=$(awk -v u="$(cat "$d/memory.current")" '$1 == "inactive_file" { print u - $2 }' "$d/memory.stat")
      res=$(awk '$1 == "anon" || $1 == "shmem" { s += $2 } END { print s }' "$d/memory.stat")
    else
      die "cannot read the containers' cgroups (neither cgroup v1 nor v2 with Docker's cgroupfs layout)"
    fi
    echo "c ${tenant:--} $cpu $ws $res"
  done
  local engine=0 pid
  for pid in $(pidof dockerd containerd containerd-shim-runc-v2); do
    engine=$((engine + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")))
  done
  echo "e $engine"
  awk '$1 == "cpu" { print "h", $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# idle measures the idle stack over 120 s into $work/idle-$1: its
# memory at the end, and the CPU its containers, the engine and the host
# spent meanwhile (containers that restart meanwhile would count wrong:
# none does when idle).
idle() {
  sample >"$work/idle-$1.a"
  sleep 120
  sample >"$work/idle-$1.b"
  awk -v hz="$hz" '
    FNR == 1 { f++ }
    $1 == "c" { key = $2 == "-" ? "shared" : "tenant"
      if (f == 1) cpu[key] -= $3; else { cpu[key] += $3; ws[key] += $4; res[key] += $5 } }
    $1 == "e" { eng += f == 1 ? -$2 : $2 }
    $1 == "h" { host += f == 1 ? -$2 : $2 }
    END { printf "%.2f %.2f %.2f %.2f %.3f %.3f %.3f %.3f\n", ws["tenant"] / 2^20, res["tenant"] / 2^20, ws["shared"] / 2^20, res["shared"] / 2^20,
      100 * cpu["tenant"] / 1e9 / 120, 100 * cpu["shared"] / 1e9 / 120, 100 * eng / hz / 120, 100 * host / hz / 120 }
  ' "$work/idle-$1.a" "$work/idle-$1.b" >"$work/idle-$1"
  read -r ws res sws sres tcpu scpu ecpu hcpu <"$work/idle-$1"
  note "backups $1: the tenants' containers, memory" "$ws MiB (resident: $res MiB)"
  note "backups $1: the shared containers, memory" "$sws MiB (resident: $sres MiB)"
  note "backups $1: CPU, % of a core" "tenants' containers $tcpu, shared $scpu, dockerd+containerd $ecpu, host $hcpu"
}

set_config() { pulumi -C "$src" config set -s "$stack" "$@" >>"$log" 2>&1; }
up() { pulumi -C "$src" up --yes --skip-preview -s "$stack" >>"$log" 2>&1 || die "pulumi up failed"; }
agent_json() { docker exec "$prefix-$1-backup" polls-agent backup "${@:2}"; }
psql_t01() { docker exec "$prefix-t01-db" psql -U polls -d polls -qAtc "$1"; }

# based waits until every tenant's agent has a base backup.
based() {
  local t deadline=$((SECONDS + 600))
  for t in $(tenant_list "$n"); do
    until agent_json "$t" status --json 2>/dev/null | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin).get("lastBase") else 1)'; do
      ((SECONDS < deadline)) || die "$t has no base backup after 10 minutes"
      sleep 2
    done
  done
}

echo "bench-backup: what backups cost and how fast they restore, $n tenants, on $(nproc) cores"
mkdir -p "$src" "$work/bin" "$work/state"
tar -C "$root" --exclude=./.git --exclude=./.pulumi-state --exclude='./Pulumi.*.yaml' -cf - . | tar -C "$src" -xf -
(cd "$src/app" && go mod download && cd ../agent && go mod download) >>"$log" 2>&1
(cd "$src" && go build -o "$work/bin/modproxy" ./tools/modproxy) >>"$log" 2>&1
start_module_proxy
port=$(free_port)
pulumi -C "$src" stack init "$stack" >>"$log" 2>&1
set_config polls:httpPort "$port"
set_config polls:postgresImage polls-local/postgres:15
set_config polls:nginxImage polls-local/nginx:1
set_config polls:appBuildNetwork host
set_config polls:appBuildArgs "$(pulumi_args)"
set_config polls:tenants "$(tenant_json "$n")"

# --- idle cost --------------------------------------------------------------
set_config polls:backups false
up
# shellcheck disable=SC2046 # one argument per tenant
answer "$port" "" $(tenant_list "$n")
sleep 30
idle off

set_config polls:backups true
# Only with backups on: the config check refuses a repository without them.
set_config polls:backupRepository "$work/repo"
clock
up
based
note "backups on: pulumi up until every tenant has a base backup" "$(seconds) s"
# Idle means between base backups. A tenant's daily slot may come minutes
# after its first base backup (the slots are spread by tenant name), and
# the checkpoint PostgreSQL makes in the minutes after a base backup
# writes log its agent then sends: wait out any slot due within the
# measurement, then make the checkpoint now, so the measured minutes come
# after all of it. (A scheduled base backup of an idle tenant costs a few
# CPU-seconds once a day.)
soon=$(for t in $(tenant_list "$n"); do agent_json "$t" status --json; done | python3 -c '
import datetime, json, sys
now = datetime.datetime.now(datetime.timezone.utc)
docs = json.loads("[" + sys.stdin.read().replace("}\n{", "},{") + "]")
due = [datetime.datetime.fromisoformat(d["nextBase"].replace("Z", "+00:00")) for d in docs if d.get("nextBase")]
print(max(0, int(min((t - now).total_seconds() for t in due))) if due else 99999)')
if ((soon < 240)); then
  note "a scheduled base backup is due in ${soon} s" "waiting it out"
  sleep $((soon + 20))
  based
fi
for t in $(tenant_list "$n"); do
  docker exec "$prefix-$t-db" psql -U polls -d polls -qAtc CHECKPOINT >>"$log" 2>&1 || die "CHECKPOINT in $t failed"
done
sleep 60
idle on
awk -v n="$n" '
  FNR == 1 { f++ }
  { for (i = 1; i <= NF; i++) v[f, i] = $i }
  END {
    printf "  %-52s %.1f MiB (aim <= 10); as docker stats counts it %.1f MiB\n", "extra idle memory per tenant, resident", (v[2, 2] - v[1, 2]) / n, (v[2, 1] - v[1, 1]) / n
    printf "  %-52s %.1f MiB resident, once per stack\n", "extra idle memory of the shared containers (gateway)", v[2, 4] - v[1, 4]
    printf "  %-52s %.2f %% of a core (its containers %.2f, dockerd+containerd %.2f)\n", "extra idle CPU per tenant",
      ((v[2, 5] - v[1, 5]) + (v[2, 7] - v[1, 7])) / n, (v[2, 5] - v[1, 5]) / n, (v[2, 7] - v[1, 7]) / n
    printf "  %-52s %.2f %% of a core, once per stack; the whole host %.1f %% against %.1f %%\n", "extra idle CPU of the shared containers", v[2, 6] - v[1, 6], v[2, 8], v[1, 8]
  }' "$work/idle-off" "$work/idle-on"

# --- a 1 GiB tenant -----------------------------------------------------------
docker exec "$prefix-t01-db" pgbench -i -q -s 68 -U polls polls >>"$log" 2>&1 || die "pgbench -i failed"
size=$(psql_t01 "SELECT pg_size_pretty(pg_database_size('polls'))")
took=$(agent_json t01 now | python3 -c 'import json, sys; b = json.load(sys.stdin); print("%.1f s, %.0f MiB read, %.0f MiB added" % (b["took"] / 1e9, b["bytes"] / 2**20, b["added"] / 2**20))')
note "base backup of t01 ($size)" "$took"
agent_json t01 drill --json >"$work/drill.json"
python3 - "$work/drill.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("  %-52s %.1f s (fetch and unpack %.1f s, recovery %.1f s), %.0f MiB" % ("drill: restore into a scratch database",
      (d["fetch"] + d["recover"]) / 1e9, d["fetch"] / 1e9, d["recover"] / 1e9, d["bytes"] / 2**20))
PY
set_config polls:tenants "$(tenant_list "$n" | python3 -c 'import json, sys
names = sys.stdin.read().split()
print(json.dumps({t: ({"restore": "latest"} if t == "t01" else {}) for t in names}))')"
clock
up
answer "$port" "" t01
note "in-place restore of t01 to latest (pulumi up until it serves)" "$(seconds) s"
docker logs "$prefix-t01-db" 2>&1 | grep -o 'unpacked in [0-9.a-zµ]*' | tail -n 1 | sed 's/^/    the database entrypoint: /'

# --- RPO under a steady write load ---------------------------------------------
docker exec "$prefix-t01-db" pgbench -n -c 2 -R 20 -T 90 -U polls polls >>"$log" 2>&1 &
loadpid=$!
sleep 20
for i in 1 2 3; do
  agent_json t01 drill --json | python3 -c 'import json, sys; d = json.load(sys.stdin); print("  %-52s %.1f s" % ("RPO under 20 writes/s, drill '"$i"'", d["rpo"] / 1e9))'
  sleep 20
done
wait "$loadpid" || true
loadpid=""
