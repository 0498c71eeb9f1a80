#!/usr/bin/env bash
# What a setting of the Pulumi engine changes at many tenants: the same
# no-op preview and the same release with Pulumi's defaults (A) and with
# the environment BENCH_B names (B; by default PULUMI_SKIP_CHECKPOINTS=true,
# where the file backend writes the state once, at the end of the update,
# instead of after every step), alternating A/B/A/B on one stack, in one
# run, and the B/A ratios of the medians.
#
#   scripts/bench-release.sh                  # or: make bench-release; N=30
#   BENCH_N=60 scripts/bench-release.sh
#   BENCH_N=100 BENCH_ROUNDS=1 scripts/bench-release.sh   # one A, one B
#   BENCH_B="PULUMI_PARALLEL_DIFF=true" scripts/bench-release.sh
#   BENCH_LOG=/tmp/bench.log scripts/bench-release.sh   # keep the full log
#
# One stack (a file backend in a temp dir, the local images, polls:backups
# false, as make bench-compose's Pulumi side) is brought up at N tenants
# (t01..tNN), untimed but reported, then previewed with nothing changed,
# BENCH_PREVIEWS (default 3) rounds of an A and a B preview, each timed
# with its CPU split. Then BENCH_ROUNDS (default 2) rounds
# of an A and a B release, VERSION=2, 3, ... in
# polls:appBuildArgs, each `pulumi up --skip-preview` (which builds the new
# app image and replaces every tenant's migration and app) until every
# tenant answers through nginx with the new X-Polls-Version. A request loop
# (bench-lib.sh: a GET every 50 ms to each of t01..t03) runs through each
# release. Per release it prints:
#
#   wall       seconds from the start of `pulumi up` until every tenant
#              answers with the new version; up: the command alone
#   orch CPU   CPU-seconds of pulumi with its plugins and program, the
#              orchestrator of cpu_report (bench-lib.sh), whose line with
#              the host's whole split follows each release
#   engine     of that, the pulumi CLI process's own CPU-seconds (where the
#              engine and the backend's checkpoint writes run), read from
#              /proc when it has exited and before it is reaped
#   writes     how many versions of the state file were seen, polled every
#              50 ms (a lower bound of the writes: two within 50 ms count once)
#   state      the state file's size after the release
#   failed     the request loop's failed/sent requests
#
# The host is shared (2 cores here): the load average is printed at start
# and end, and A and B alternate so that drift hits both.
#
# What the default B costs users: with PULUMI_SKIP_CHECKPOINTS=true an update that is
# interrupted (Ctrl-C twice, a crash, a lost machine) leaves the state as
# it was before the update: whatever it created or replaced up to then is
# unknown to the state, and the next update must be preceded by `pulumi
# refresh` and, for created resources, imports or manual removal.
#
# Needs: a Docker engine, go, python3, curl, the local images
# (scripts/images.sh), the Pulumi CLI, pulumi-language-go and the docker
# 4.10.0 and random 4.19.0 plugins. Runs on a copy of the working tree;
# removes the request loop, the stack (destroy, stack rm, its containers,
# networks, volumes and images), this run's build stages, the module proxy
# and the temp dir on exit, also on failure or Ctrl-C.
set -euo pipefail
export LC_ALL=C PULUMI_SKIP_UPDATE_CHECK=1
# As scripts/up.sh and the workflows run it (README, "Performance").
export PULUMI_PARALLEL=${PULUMI_PARALLEL:-64} GOGC=${GOGC:-400}
# B: VAR=value words, set for B's commands only; A runs without them.
read -ra b_env <<<"${BENCH_B:-PULUMI_SKIP_CHECKPOINTS=true}"
for kv in "${b_env[@]}"; do
  [[ $kv =~ ^PULUMI_[A-Z_]+=[^[:space:]]*$ ]] || {
    echo "bench-release: BENCH_B: $kv is not PULUMI_NAME=value (e.g. BENCH_B=\"PULUMI_SKIP_CHECKPOINTS=true\")" >&2
    exit 1
  }
  unset "${kv%%=*}"
done
[ -z "${BENCH_LOG:-}" ] || BENCH_LOG=$(realpath -m -- "$BENCH_LOG") # before the cd
cd "$(dirname "$0")/.."
root=$PWD
n=${BENCH_N:-30}
rounds=${BENCH_ROUNDS:-2}
previews=${BENCH_PREVIEWS:-3}
images=(polls-local/postgres:15 polls-local/nginx:1 polls-local/golang:1.26 polls-local/static:bookworm)

die() {
  echo "bench-release: $*" >&2
  exit 1
}

missing=()
for tool in curl go python3 pulumi pulumi-language-go; do
  command -v "$tool" >/dev/null || missing+=("$tool on PATH")
done
if ! docker info >/dev/null 2>&1; then
  missing+=("a running Docker engine (docker info fails)")
else
  for img in "${images[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 || missing+=("image $img (run scripts/images.sh)")
  done
fi
[[ $n =~ ^[0-9]+$ ]] && ((n >= 3)) || missing+=("BENCH_N ($n) a number >= 3 (the request loop asks t01..t03)")
[[ $rounds =~ ^[1-9][0-9]*$ ]] || missing+=("BENCH_ROUNDS ($rounds) a number >= 1 (rounds of an A and a B release)")
[[ $previews =~ ^[1-9][0-9]*$ ]] || missing+=("BENCH_PREVIEWS ($previews) a number >= 1 (rounds of an A and a B preview)")
if ((${#missing[@]})); then
  printf -v list '\n  - %s' "${missing[@]}"
  die "cannot run, missing:$list"
fi

work=$(mktemp -d /tmp/bench-release.XXXXXX)
# The log goes straight to BENCH_LOG when set: it is all there, however
# the run ends (a copy at exit was lost once, when a run ended without it).
log=${BENCH_LOG:-$work/bench.log}
: >"$log"
src=$work/src
id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
stack=benchrel-$id
prefix=polls-$stack
export PULUMI_BACKEND_URL=file://$work/state
PULUMI_CONFIG_PASSPHRASE=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
export PULUMI_CONFIG_PASSPHRASE
proxy="" goproxy="" stack_up="" hammer=""

# ours reports whether image $1 was built by this run (its build args name
# this run's module proxy); build_container whether stopped container $1 is
# a step of such a build. remove_build_stages (bench-lib.sh) uses both.
ours() {
  [ -n "$goproxy" ] && docker history --no-trunc --format '{{.CreatedBy}}' "$1" 2>/dev/null | grep -qF -- "GOPROXY=$goproxy "
}
build_container() {
  local img
  img=$(docker inspect -f '{{.Image}}' "$1" 2>/dev/null) && ours "$img"
}

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  [ -n "$hammer" ] && kill "$hammer" 2>/dev/null && wait "$hammer" 2>/dev/null
  if [ "$status" -ne 0 ] && [ -f "$log" ]; then
    echo "bench-release: failed; last lines of the log:" >&2
    tail -n 30 "$log" >&2
  fi
  if [ -n "$stack_up" ]; then
    pulumi -C "$src" destroy --yes --skip-preview -s "$stack" >>"$log" 2>&1
    pulumi -C "$src" stack rm --yes --force -s "$stack" >>"$log" 2>&1
    docker ps -aq --filter "label=polls.stack=$prefix" | xargs -r docker rm -f >>"$log" 2>&1
    # Docker 20.10 may answer "has active endpoints" for a while after the
    # last container on a network is gone; after one run at N=30 it still
    # did for the edge network minutes later, so what is left is named.
    for _ in 1 2 3; do
      docker network ls -q --filter "name=$prefix-" | xargs -r docker network rm >>"$log" 2>&1 && break
      sleep 3
    done
    docker volume ls -q | grep "^$prefix-" | xargs -r docker volume rm >>"$log" 2>&1
    docker images -q --filter "reference=$prefix-*" | sort -u | xargs -r docker image rm -f >>"$log" 2>&1
    local left
    left=$({
      docker ps -aq --filter "label=polls.stack=$prefix"
      docker network ls --format '{{.Name}}' --filter "name=$prefix-"
      docker volume ls -q | grep "^$prefix-"
    } 2>/dev/null | tr '\n' ' ')
    [ -z "$left" ] || echo "bench-release: could not remove: $left(remove them by hand)" >&2
  fi
  remove_build_stages
  [ -n "$proxy" ] && kill "$proxy" 2>/dev/null && wait "$proxy" 2>/dev/null
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"

echo "bench-release: a no-op preview and a release at N=$n tenants, with Pulumi's defaults (A) and with ${b_env[*]} (B)"
echo "  pulumi $(pulumi version), file backend, PULUMI_PARALLEL=$PULUMI_PARALLEL GOGC=$GOGC; docker engine $(docker version --format '{{.Server.Version}}')"
echo "  host: $(nproc) cores, $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
mkdir -p "$src" "$work/bin" "$work/state"
tar -C "$root" --exclude=./.git --exclude=./.pulumi-state --exclude=./.pulumi-bin --exclude=./.e2e --exclude='./Pulumi.*.yaml' -cf - . | tar -C "$src" -xf -
echo "  source: working tree at $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
(cd "$src/app" && go mod download) >>"$log" 2>&1
(cd "$src" && go build -o "$work/bin/modproxy" ./tools/modproxy) >>"$log" 2>&1
# The flags pulumi-language-go builds the program with, so that no update
# compiles more than another.
(cd "$src" && go build -buildvcs=false -trimpath -ldflags "-w -s" -o /dev/null .) >>"$log" 2>&1
start_module_proxy
port=$(free_port)
pulumi -C "$src" stack init "$stack" --non-interactive >>"$log" 2>&1
stack_up=$stack
set_config() { pulumi -C "$src" config set -s "$stack" "$@" >>"$log" 2>&1; }
set_config polls:httpPort "$port"
set_config polls:postgresImage polls-local/postgres:15
set_config polls:nginxImage polls-local/nginx:1
set_config polls:appBuildNetwork host
set_config polls:appBuildArgs "$(pulumi_args)"
set_config polls:backups false
set_config polls:tenants "$(tenant_json "$n")"
read -ra tenants <<<"$(tenant_list "$n")"

# as MODE CMD... runs CMD under scripts/cpu-by-process.py, with B's environment when MODE
# is B.
as() {
  local mode=$1
  shift
  if [ "$mode" = B ]; then
    env "${b_env[@]}" python3 "$root/scripts/cpu-by-process.py" "$work/engine.out" "$statefile" "$@"
  else
    python3 "$root/scripts/cpu-by-process.py" "$work/engine.out" "$statefile" "$@"
  fi
}
# up runs pulumi up as $1 (A or B), and writes the command's seconds to
# $work/up.s (it runs in cpu_of's subshell).
up() {
  local t0=$EPOCHREALTIME rc=0
  as "$1" pulumi -C "$src" up --yes --skip-preview -s "$stack" >"$work/up.out" 2>&1 || rc=$?
  cat "$work/up.out" >>"$log"
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", b - a }' >"$work/up.s"
  return $rc
}
# changes prints the last update's resource summary, e.g. "+-60 replaced, 33 unchanged".
changes() {
  awk '/^Resources:/ { on = 1; next } /^Duration/ { on = 0 }
    on && NF { $1 = $1; printf "%s%s", sep, $0; sep = ", " } END { print "" }' "$work/up.out"
}

statefile=$work/state/.pulumi/stacks/polls/$stack.json
echo "cold up of N=$n (untimed for the comparison):"
clock
cpu_mark
cpu_of up A || die "the cold pulumi up failed (see the log)"
answer "$port" "" "${tenants[@]}"
wall=$(seconds)
up_s=$(cat "$work/up.s")
[ -f "$statefile" ] || statefile=$(find "$work/state/.pulumi" -name "$stack.json" 2>/dev/null | head -n 1 || true)
[ -f "$statefile" ] || die "no state file $stack.json under $work/state/.pulumi/stacks"
printf '  %ss until every tenant answers (pulumi up %ss); state %d KiB; %s\n' "$wall" "$up_s" $(($(stat -c %s "$statefile") / 1024)) "$(changes)"
cpu_report "$wall"
echo "    CPU-s by process under pulumi: $(cat "$work/engine.out.split")"

# No-op previews of the stack as it stands: what a reviewer waits for.
declare -a p_wall p_orch p_engine
echo "no-op pulumi previews at N=$n:"
pmodes=()
for ((i = 0; i < previews; i++)); do pmodes+=(A B); done
for i in "${!pmodes[@]}"; do
  clock
  cpu_mark
  cpu_of as "${pmodes[i]}" pulumi -C "$src" preview -s "$stack" >>"$log" 2>&1 || die "no-op preview $((i + 1)) (${pmodes[i]}) failed (see the log)"
  wall=$(seconds)
  read -r own kids _ <"$work/engine.out"
  # shellcheck disable=SC2034 # read by ratio, through its nameref
  p_wall[i]=$wall p_orch[i]=$cpu_orch p_engine[i]=$own
  echo "  $((i + 1)). ${pmodes[i]}: ${wall}s; engine $own CPU-s, plugins and program $kids"
  cpu_report "$wall"
  echo "    CPU-s by process under pulumi: $(cat "$work/engine.out.split")"
done

# Results by release; the table's columns.
declare -a r_mode r_wall r_up r_orch r_engine r_writes r_kib r_failed
echo "releases (each until every tenant answers with the new X-Polls-Version):"
modes=()
for ((i = 0; i < rounds; i++)); do modes+=(A B); done
for i in "${!modes[@]}"; do
  mode=${modes[$i]} version=$((i + 2))
  set_config polls:appBuildArgs "$(pulumi_args VERSION="$version")"
  hammer_start "$port" t01 t02 t03
  clock
  cpu_mark
  cpu_of up "$mode" || die "release VERSION=$version ($mode) failed (see the log)"
  answer "$port" "$version" "${tenants[@]}"
  wall=$(seconds)
  up_s=$(cat "$work/up.s")
  hammer_stop
  read -r own kids writes <"$work/engine.out"
  r_mode[i]=$mode r_wall[i]=$wall r_up[i]=$up_s r_orch[i]=$cpu_orch r_engine[i]=$own r_writes[i]=$writes
  r_kib[i]=$(($(stat -c %s "$statefile") / 1024)) r_failed[i]=$hammered
  printf '  %d. %s VERSION=%d: %ss (pulumi up %ss); engine %s CPU-s, plugins and program %s; %s state writes seen; %s\n' \
    $((i + 1)) "$mode" "$version" "$wall" "$up_s" "$own" "$kids" "$writes" "$(changes)"
  cpu_report "$wall"
  echo "    CPU-s by process under pulumi: $(cat "$work/engine.out.split")"
done

echo "results (N=$n; A = Pulumi's defaults; B = ${b_env[*]}):"
printf '  %-9s %7s %7s %9s %8s %7s %9s %13s\n' release wall up "orch CPU" engine writes state failed/sent
for i in "${!modes[@]}"; do
  printf '  %d. %-6s %6ss %6ss %8ss %7ss %7s %5d KiB %13s\n' $((i + 1)) "${r_mode[i]}" "${r_wall[i]}" "${r_up[i]}" \
    "${r_orch[i]}" "${r_engine[i]}" "${r_writes[i]}" "${r_kib[i]}" "${r_failed[i]}"
done
# ratio prints the medians of A's and B's values in the named column
# (odd runs are A, even ones B; the median of two is their mean) and B/A.
ratio() {
  local -n col=$1
  local i
  for i in "${!col[@]}"; do echo "$((i % 2 ? 1 : 0)) ${col[i]}"; done | sed 's/^0/A/; s/^1/B/' | sort -k1,1 -k2,2g | awk '
    { v[$1, ++k[$1]] = $2 }
    function median(m, n) { n = k[m]; return n % 2 ? v[m, (n + 1) / 2] : (v[m, n / 2] + v[m, n / 2 + 1]) / 2 }
    END { ma = median("A"); mb = median("B")
      printf "A %.2f, B %.2f: B/A %s\n", ma, mb, ma == 0 ? "-" : sprintf("%.3f", mb / ma) }'
}
# shellcheck disable=SC2034 # read by ratio, through its nameref
failed_counts=("${r_failed[@]%%/*}")
echo "medians (of $previews previews and $rounds releases each) and B/A:"
printf '  %-38s %s\n' "no-op preview, s" "$(ratio p_wall)"
printf '  %-38s %s\n' "no-op preview, orchestrator CPU-s" "$(ratio p_orch)"
printf '  %-38s %s\n' "no-op preview, engine CPU-s" "$(ratio p_engine)"
printf '  %-38s %s\n' "release: wall time, s" "$(ratio r_wall)"
printf '  %-38s %s\n' "pulumi up alone, s" "$(ratio r_up)"
printf '  %-38s %s\n' "orchestrator CPU-s" "$(ratio r_orch)"
printf '  %-38s %s\n' "pulumi CLI's own CPU-s (engine)" "$(ratio r_engine)"
printf '  %-38s %s\n' "state writes seen" "$(ratio r_writes)"
printf '  %-38s %s\n' "state size, KiB" "$(ratio r_kib)"
printf '  %-38s %s\n' "failed requests" "$(ratio failed_counts)"
echo "  load average $(cut -d' ' -f1-3 /proc/loadavg) at the end ($(nproc) cores, shared)"
