#!/usr/bin/env bash
# What backups cost and how fast they bring data back, measured on this
# machine in one run (make bench-backup):
#
#   idle cost      N tenants (BENCH_N, default 5) with backups off, then the
#                  same stack with backups on: the memory of the stack's
#                  containers (docker stats) and the host's busy CPU over
#                  60 s of idleness, per tenant; the difference is what
#                  backups add, printed with the ratio on/off
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
export LC_ALL=C PULUMI_SKIP_UPDATE_CHECK=1 PULUMI_PARALLEL=${PULUMI_PARALLEL:-64}
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

# ram sets mib to the memory of the stack's running containers, in MiB.
mib=""
ram() {
  # shellcheck disable=SC2046 # one argument per container
  mib=$(docker stats --no-stream --format '{{.MemUsage}}' $(docker ps -q --filter "label=polls.stack=$prefix") |
    awk '{ v = $1; unit = v; sub(/^[0-9.]+/, "", unit); sub(/[A-Za-z]+$/, "", v)
      f = unit == "GiB" ? 1024 : unit == "MiB" ? 1 : unit == "KiB" ? 1 / 1024 : 1 / 1048576
      sum += v * f } END { printf "%.1f", sum }')
}

# idle_cpu sets cpu to the host's busy CPU, in % of one core, over 60 s.
cpu=""
idle_cpu() {
  local a b
  a=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
  sleep 60
  b=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
  cpu=$(awk -v a="$a" -v b="$b" -v hz="$hz" 'BEGIN { printf "%.1f", 100 * (b - a) / hz / 60 }')
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
ram
off_mib=$mib
idle_cpu
off_cpu=$cpu
note "backups off: memory, idle CPU" "$off_mib MiB, $off_cpu % of a core"

set_config polls:backups true
# Only with backups on: the config check refuses a repository without them.
set_config polls:backupRepository "$work/repo"
clock
up
based
note "backups on: pulumi up until every tenant has a base backup" "$(seconds) s"
sleep 30
ram
on_mib=$mib
idle_cpu
on_cpu=$cpu
note "backups on: memory, idle CPU" "$on_mib MiB, $on_cpu % of a core"
awk -v n="$n" -v a="$off_mib" -v b="$on_mib" -v c="$off_cpu" -v d="$on_cpu" 'BEGIN {
  printf "  %-52s %.1f MiB (aim <= 10), ratio on/off %.2f\n", "extra idle memory per tenant", (b - a) / n, b / a
  printf "  %-52s %.2f %% of a core, ratio on/off %.2f\n", "extra idle CPU per tenant", (d - c) / n, (c > 0 ? d / c : 0)
}'

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
