#!/usr/bin/env bash
# Times the Pulumi stack against `docker-compose` of the equivalent compose
# file, in one run, and prints pulumi / compose ratios and the requests that
# failed while each side changed a running deployment.
#
#   scripts/bench-compose.sh                        # or: make bench-compose
#   BENCH_COMPOSE_ONLY=1 scripts/bench-compose.sh   # the compose half only
#   BENCH_N100=1 scripts/bench-compose.sh           # also both sides at N=100, and issue 20's aims
#   BENCH_N100=1 BENCH_LARGE_N=20 scripts/bench-compose.sh   # the same at N=20 (a quick check)
#   BENCH_SMALL_N="10" scripts/bench-compose.sh     # the small runs at N=10 only (default "10 30")
#   BENCH_PREVIEWS=5 scripts/bench-compose.sh       # each Pulumi preview timed 5 times, the median kept (default 3)
#   BENCH_LOG=/tmp/bench.log scripts/bench-compose.sh   # keep the full log
#   BENCH_REV=HEAD scripts/bench-compose.sh         # measure a commit, not the working tree
#   BENCH_PULUMI_ENV="PULUMI_SKIP_CHECKPOINTS=true" scripts/bench-compose.sh
#                    # the Pulumi side's commands run with these settings
#                    # (README recommends this one from a few dozen tenants on)
#   BENCH_MIGRATIONS=app scripts/bench-compose.sh   # both sides with polls:migrations app
#                    # (the apps migrate as they start; default: container)
#
# Scenarios (tenants are t01..tNN; "answers" means through nginx on
# 127.0.0.1 with curl -H 'Host: tNN.polls.local'):
#
#   cold N=10, N=30  pulumi up of a new stack, against docker-compose up -d
#                    of the file tools/composegen writes for the same tenants;
#                    until every tenant answers 200; each side's run also
#                    prints the host's busy CPU-seconds split into the
#                    orchestrator (pulumi and its plugins and program, or
#                    docker-compose), dockerd+containerd, the containers and
#                    the rest (cpu_report in bench-lib.sh)
#   no-op N=10       pulumi preview with nothing changed, against
#                    docker-compose up -d with nothing changed (which re-runs
#                    the migrations); command duration only; Pulumi's
#                    previews are each timed BENCH_PREVIEWS times (default
#                    3), each printed, and their median compared
#   release N=10     a new app version, VERSION=2: pulumi config set
#                    polls:appBuildArgs with VERSION=2 and pulumi up, against
#                    docker build --build-arg VERSION=2 (timed: the build is
#                    part of compose's release, as it is of pulumi up) and
#                    docker-compose up -d of the file naming the new image;
#                    until every tenant answers with X-Polls-Version: 2
#   add t11 to N=10  pulumi up after adding t11 to polls:tenants, against
#                    regenerating the compose file for 11 tenants and
#                    docker-compose up -d; until t11 first answers 200
#                    (polled every 0.2 s from the start, whether or not
#                    the command is done; the note gives when it ended)
#   idle RAM N=10    the memory `docker stats --no-stream` reports for the
#                    deployment's running containers, per tenant, after the
#                    deployment has been idle for 20 s
#
# During release and add, a request loop (one python3 process, one thread per
# tenant, a GET every 50 ms to each of t01..t03, 5 s timeout) runs from just
# before the step starts until it ends; a failure is an answer other than 200
# or a connection error or timeout. Both sides' counts are printed; the
# failures themselves are in the log.
#
# BENCH_N100=1 then runs both sides at N=100 (BENCH_LARGE_N): cold, a
# release (VERSION=2, under the request loop) and adding t101 (under the
# request loop); on the Pulumi side also a no-op preview, a preview of
# adding t101 (before that up) and the idle RAM per tenant. Each Pulumi cold
# up and release, at N=10 and N=100, records the orchestrator's CPU-seconds
# per tenant. It ends with issue 20's aims, each as a figure or ratio
# against its bound: a release in <= 4 min and <= 1.5x compose's, previews
# in <= 8 s, adding a tenant in <= 15 s, the orchestrator's CPU-seconds per
# tenant at N=100 <= 1.3x N=10's (cold up and release), cold up <= 1.0x
# compose's at N=10, 30 and 100; with them, the host's CPU-seconds per
# tenant of each cold up (both sides) and Pulumi release at N=10 and N=100,
# split into the orchestrator, dockerd and containerd, the containers and
# the rest.
#
# Before each cold up the run waits until the host's load average is below
# its number of cores (at most 5 min, printed when it waits).
#
# Fairness: both sides run the same images (the local polls-local/* images
# and the app built from app/), health checks, init, memory limits, gating
# (migration after a healthy database, app after a successful migration;
# with BENCH_MIGRATIONS=app, the app, which migrates as it starts, after a
# healthy database: polls:migrations app, and composegen -migrations app),
# nginx config (rendered by the nginx package) and tenant network subnets
# (the /28s subnets.Plan gives from the default polls:subnetPool, around
# other stacks' tenant networks on the engine). Compose
# keeps its own short health-check intervals (2 s / 3 s), its fastest gating,
# except at N=100, where checks that often overload the host (60 s there,
# BENCH_COMPOSE_LARGE_INTERVAL; see large_interval).
# The app image is built once before any timing, and the compose side runs
# that build (polls-bench-app). Each Pulumi stack labels its build with its
# own prefix before the dependency layers, so before each Pulumi cold up its
# stack builds the app image once, untimed (`up --target` the image, then
# `state delete` it), and the cold up's build hits that stack's layer
# cache, as compose's up uses its build. Each side's VERSION=2 build starts
# from compiled dependencies: the compose side's VERSION=2 images are
# removed before the Pulumi side runs. The Pulumi program's Go build cache is warmed first, with
# the flags pulumi-language-go builds it with. Only one deployment exists at
# a time; each is torn down before the next starts.
#
# Compose's `up -d` is run again, at most three runs in all, when it gives
# up on a dependency that turned unhealthy (as an operator reruns it); the
# timing includes every run, and the result's note says how many there were
# and why. A run that timed out waiting for the engine is not repeated.
#
# At N=big a compose step that fails does not end the run: compose's steps
# there are recorded up to the one that failed (the others show "-"), its
# deployment is taken down, and the Pulumi side runs once the engine
# answers again (docker ps and docker info, each within 60 s). An engine
# that does not answer stops the run: restarting dockerd is left to the
# operator (README, "Performance").
#
# Compose client: docker-compose 1.29.2 from Debian (apt-get install
# docker-compose), file format 2.4. tools/composegen's tests keep each
# service and network equal to what the program declares. The tenant
# subnets other stacks already use are read before each compose deployment
# and kept for its lifetime; a network created in the pool later, in a slot
# compose then wants, makes its `up` fail.
#
# Needs: a Docker engine, docker-compose, curl, go, python3, the local images
# (scripts/images.sh), and unless BENCH_COMPOSE_ONLY is set the Pulumi CLI,
# pulumi-language-go and the docker 4.10.0 and random 4.19.0 plugins. The
# Pulumi side runs on a copy of the repo with a throwaway stack on a file
# backend in a temp dir. Everything created is removed on exit, also on
# failure or Ctrl-C: the request loop, stacks (destroy, stack rm, retained
# pgdata volumes), compose projects (down -v), images (the app images, their
# build stages and the stopped build containers the Pulumi provider's build
# leaves), the module proxy and the temp dir.
set -euo pipefail
export LC_ALL=C PULUMI_SKIP_UPDATE_CHECK=1
# As scripts/up.sh and the workflows run it (README, "Performance").
export PULUMI_PARALLEL=${PULUMI_PARALLEL:-64} GOGC=${GOGC:-400}
# docker-compose 1.29 runs each service's containers in a thread pool
# nested in the pool of services, both bounded by this (default 64): with
# more services waiting on their dependencies than that, the nested tasks
# never get a thread and `up -d` hangs (docker/compose#5864). At N=100
# (300 services) it did, twice, with 18 and 35 databases up and nothing
# more for minutes. Above the number of services, it cannot.
export COMPOSE_PARALLEL_LIMIT=${COMPOSE_PARALLEL_LIMIT:-1024}
# Without that bound, its release at N=100 recreates the 100 apps at once,
# and requests to the engine took longer than compose's default 60 s: it
# gave up with "Read timed out" on a dozen apps. Ten minutes, as compose's
# own message advises raising it.
export COMPOSE_HTTP_TIMEOUT=${COMPOSE_HTTP_TIMEOUT:-600}
# PULUMI_NAME=value words for the Pulumi side (compose reads none of them).
read -ra pulumi_env <<<"${BENCH_PULUMI_ENV:-}"
for kv in "${pulumi_env[@]}"; do
  [[ $kv =~ ^PULUMI_[A-Z_]+=[^[:space:]]*$ ]] || {
    echo "bench-compose: BENCH_PULUMI_ENV: $kv is not PULUMI_NAME=value (e.g. BENCH_PULUMI_ENV=\"PULUMI_SKIP_CHECKPOINTS=true\")" >&2
    exit 1
  }
  export "${kv?}"
done
[ -z "${BENCH_LOG:-}" ] || BENCH_LOG=$(realpath -m -- "$BENCH_LOG") # before the cd
cd "$(dirname "$0")/.."
root=$PWD
compose_only=${BENCH_COMPOSE_ONLY:-}
n100=${BENCH_N100:-}
big=${BENCH_LARGE_N:-100}
read -ra small <<<"${BENCH_SMALL_N:-10 30}"
n_previews=${BENCH_PREVIEWS:-3}
# Compose's health checks at N=big. Each check is a process the engine
# starts, about a third of a CPU-second on this host: 100 tenants' 200
# checked containers every 2-3 s ask for some 25 cores. At N=100 (a load
# average near 300) the databases' checks timed out, and compose gave up
# its cold `up -d` on a dependency it saw unhealthy ("Container ... is
# unhealthy"), in three runs of it in a row. At 60 s the checks
# ask about one core; the program's own idle interval is 2 min (it probes a
# starting container itself, so that interval does not slow its gating).
# Compose has no such probe: it gates on a container's first health check,
# which Docker 20.10 runs one interval after the start (no start interval
# before Docker 25), so at N=big each of its gated steps (database, then
# app) waits up to that long. Its N=big figures carry those waits.
large_interval=${BENCH_COMPOSE_LARGE_INTERVAL:-60s}
migrations=${BENCH_MIGRATIONS:-container}
[ -z "$compose_only" ] || n100="" # the aims need both sides
app_image=polls-bench-app:latest
app_image_v2=polls-bench-app:v2
pool=10.230.0.0/16 # spec.DefaultSubnetPool, which composegen plans from
images=(polls-local/postgres:15 polls-local/nginx:1 polls-local/golang:1.26 polls-local/static:bookworm)

die() {
  echo "bench-compose: $*" >&2
  exit 1
}
[[ $migrations == container || $migrations == app ]] || die "BENCH_MIGRATIONS=$migrations: use container (the default) or app, as polls:migrations"
[[ $n_previews =~ ^[1-9][0-9]*$ ]] || die "BENCH_PREVIEWS=$n_previews: a number >= 1 (previews timed each time, their median recorded)"
[[ " ${small[*]} " == *" 10 "* ]] || die "BENCH_SMALL_N=${BENCH_SMALL_N:-}: must include 10 (the aims compare N=$big with N=10)"
for n in "${small[@]}"; do
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" != "$big" ] || die "BENCH_SMALL_N: $n is not a tenant count other than BENCH_LARGE_N=$big"
done

# --- what is missing, all at once, before anything is created -------------
missing=()
for tool in curl go python3; do
  command -v "$tool" >/dev/null || missing+=("$tool on PATH")
done
command -v docker-compose >/dev/null || missing+=("docker-compose on PATH (apt-get install docker-compose)")
if ! command -v docker >/dev/null; then
  missing+=("the docker CLI (apt-get install docker.io)")
elif ! docker info >/dev/null 2>&1; then
  missing+=("a running Docker engine (docker info fails)")
else
  for img in "${images[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 || missing+=("image $img (run scripts/images.sh)")
  done
fi
if [ -z "$compose_only" ]; then
  command -v pulumi-language-go >/dev/null || missing+=("the Go language host pulumi-language-go on PATH")
  if ! command -v pulumi >/dev/null; then
    missing+=("the pulumi CLI on PATH")
  else
    plugins=$(pulumi plugin ls --json 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin) or []:
    print(p["kind"], p["name"], p["version"].lstrip("v"))' 2>/dev/null || true)
    for want in "resource docker 4.10.0" "resource random 4.19.0"; do
      grep -qx "$want" <<<"$plugins" || missing+=("the Pulumi plugin $want (not in pulumi plugin ls)")
    done
  fi
fi
if ((${#missing[@]})); then
  printf -v list '\n  - %s' "${missing[@]}"
  [ -n "$compose_only" ] || list+=$'\n(BENCH_COMPOSE_ONLY=1 runs the compose half alone)'
  die "cannot run, missing:$list"
fi

# --- state and cleanup ----------------------------------------------------
work=$(mktemp -d /tmp/bench-compose.XXXXXX)
# The log goes straight to BENCH_LOG when set: it is all there, however
# the run ends (a copy at exit was lost once, when a run ended without it).
log=${BENCH_LOG:-$work/bench.log}
: >"$log"
id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
src=$work/src
# The Pulumi side's state and secrets live and die with the temp dir.
export PULUMI_BACKEND_URL=file://$work/state
PULUMI_CONFIG_PASSPHRASE=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
export PULUMI_CONFIG_PASSPHRASE
proxy=""
goproxy=""
hammer=""     # pid of the running request loop
compose_up="" # "project dir" of the compose deployment that exists
stack_up=""   # name of the Pulumi stack that exists

# compose_down takes a compose deployment down, with a second try, then
# removes what is left: after compose's N=100, twice, the engine still held
# an endpoint on the edge network with no container on it, and `down`
# stopped there, leaving every network and volume. Each try is bounded (15
# min), for an engine that no longer answers.
compose_down() {
  local project=${1%% *} dir=${1#* }
  local down=(timeout 900 docker-compose -p "$project" -f "$dir/docker-compose.yml" down -v --remove-orphans)
  "${down[@]}" >>"$log" 2>&1 && return 0
  sleep 10
  "${down[@]}" >>"$log" 2>&1 && return 0
  echo "  docker-compose down of $project failed twice or took over 15 min; see the log"
  compose_leftovers "$project"
}

# compose_leftovers removes the networks and volumes of compose project $1
# that `down` left; a network the engine will not let go of stays, and is
# logged.
compose_leftovers() {
  docker network ls -q --filter "label=com.docker.compose.project=$1" | xargs -r docker network rm >>"$log" 2>&1 || true
  docker volume ls -q --filter "label=com.docker.compose.project=$1" | xargs -r docker volume rm >>"$log" 2>&1 || true
}

# stack_down destroys a stack and removes what `pulumi destroy` keeps on
# purpose (the tenants' data volumes) or leaves after a failed update.
stack_down() {
  local s=$1 prefix=polls-$1
  pulumi -C "$src" destroy --yes --skip-preview -s "$s" >>"$log" 2>&1 || true
  pulumi -C "$src" stack rm --yes --force -s "$s" >>"$log" 2>&1 || true
  docker ps -aq --filter "label=polls.stack=$prefix" | xargs -r docker rm -f >>"$log" 2>&1 || true
  docker network ls -q --filter "name=$prefix-" | xargs -r docker network rm >>"$log" 2>&1 || true
  docker volume ls -q | grep "^$prefix-" | xargs -r docker volume rm >>"$log" 2>&1 || true
  docker image rm "$prefix-app:latest" >>"$log" 2>&1 || true
}

# ours reports whether image $1 was built by this run: one of its steps
# names this run's module proxy among its build args. (grep reads it all:
# with -q it would stop at the match, and under pipefail docker history's
# SIGPIPE would make a match a failure.)
ours() {
  [ -n "$goproxy" ] && docker history --no-trunc --format '{{.CreatedBy}}' "$1" 2>/dev/null | grep -F -- "GOPROXY=$goproxy " >/dev/null
}

# build_container reports whether stopped container $1 is a step of one of
# this run's app builds (see remove_build_stages in bench-lib.sh).
build_container() {
  local img
  img=$(docker inspect -f '{{.Image}}' "$1" 2>/dev/null) && ours "$img"
}

# diagnose prints the state of a deployment's containers, the log of each
# that exited non-zero and the databases' crash lines.
diagnose() {
  local stack=$1 c code
  docker ps -a --filter "label=polls.stack=$stack" --format '  {{.Names}}: {{.Status}}'
  for c in $(docker ps -a --filter "label=polls.stack=$stack" --filter status=exited --format '{{.Names}}'); do
    code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
    [ "$code" = 0 ] && continue
    echo "--- $c exited with status $code; its last log lines:"
    docker logs --tail 15 "$c" 2>&1
  done
  for c in $(docker ps -a --filter "label=polls.stack=$stack" --filter label=polls.role=db --format '{{.Names}}'); do
    docker logs "$c" 2>&1 | grep -E 'terminated by signal|PANIC|database system was interrupted' | tail -n 3 | sed "s/^/--- $c: /"
  done
}

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  [ -n "$hammer" ] && kill "$hammer" 2>/dev/null && wait "$hammer" 2>/dev/null
  [ -n "${serve_watcher:-}" ] && kill "$serve_watcher" 2>/dev/null
  if [ "$status" -ne 0 ] && [ -f "$log" ]; then
    local report
    report=$(
      echo "bench-compose: failed; last lines of the log:"
      tail -n 30 "$log"
      [ -z "$compose_up" ] || diagnose "${compose_up%% *}"
      [ -z "$stack_up" ] || diagnose "polls-$stack_up"
    ) 2>&1
    echo "$report" | tee -a "$log" >&2
  fi
  [ -n "$compose_up" ] && compose_down "$compose_up"
  [ -n "$stack_up" ] && stack_down "$stack_up"
  docker image rm "$app_image" "$app_image_v2" >/dev/null 2>&1
  remove_build_stages
  [ -n "$proxy" ] && kill "$proxy" 2>/dev/null && wait "$proxy" 2>/dev/null
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers --------------------------------------------------------------
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"

# ram_per_tenant waits 20 s for the deployment to settle, then sets mib to
# the memory of its running containers (label polls.stack=$1) per tenant, in
# MiB, and count to how many containers there are.
mib="" count=""
ram_per_tenant() {
  local label=$1 n=$2
  local ids
  sleep 20
  ids=$(docker ps -q --filter "label=polls.stack=$label")
  [ -n "$ids" ] || die "no running container has label polls.stack=$label"
  # shellcheck disable=SC2086 # one argument per container
  read -r mib count < <(docker stats --no-stream --format '{{.MemUsage}}' $ids |
    awk -v n="$n" '{
      v = $1; unit = v; sub(/^[0-9.]+/, "", unit); sub(/[A-Za-z]+$/, "", v)
      f = unit == "GiB" ? 1024 : unit == "MiB" ? 1 : unit == "KiB" ? 1 / 1024 : unit == "kB" ? 1 / 1000 / 1.048576 : unit == "MB" ? 1 / 1.048576 : unit == "GB" ? 1000 / 1.048576 : 1 / 1048576
      sum += v * f; count++
    } END { printf "%.1f %d\n", sum / n, count }')
}

# pool_check sets taken to the subnets of the pool composegen plans tenant
# subnets from (the program's default polls:subnetPool) that other stacks'
# tenant networks (label polls.tenant) already use on the engine: compose,
# like the program, plans around them. Any other network in the pool stops
# the run, as it makes the program's `pulumi up` fail.
taken=""
pool_check() {
  local found foreign
  # shellcheck disable=SC2046 # one argument per network
  found=$(docker network inspect -f '{{.Name}} {{if index .Labels "polls.tenant"}}tenant{{else}}other{{end}}{{range .IPAM.Config}} {{.Subnet}}{{end}}' $(docker network ls -q) |
    python3 -c '
import ipaddress, sys
pool = ipaddress.ip_network(sys.argv[1])
for line in sys.stdin:
    name, kind, *subnets = line.split()
    for s in subnets:
        if ":" not in s and ipaddress.ip_network(s, strict=False).overlaps(pool):
            print(kind, name, s)' "$pool")
  foreign=$(awk '$1 == "other" { printf "%s%s (%s)", sep, $2, $3; sep = ", " }' <<<"$found")
  [ -z "$foreign" ] || die "networks on the engine use the pool $pool that tenant networks take (the program's default polls:subnetPool): $foreign. Remove them."
  taken=$(awk '$1 == "tenant" { printf "%s%s", sep, $3; sep = "," }' <<<"$found")
  [ -z "$taken" ] || echo "  (other stacks' tenant networks use $taken of the pool; both sides plan around them)"
}

# settle waits, before each timed step on either side, until the host's
# CPU was less than half busy in two 5 s windows in a row, at most 5
# minutes, and says how long it waited: the step before leaves hundreds of
# processes' starts, exits and removals behind it. At N=100 the Pulumi cold
# up that started right after compose's N=100 teardown, at a load average
# near 60, failed: a tenant's database was not ready within the program's
# 3 min; and a step timed on a host still busy with the one before
# measures both. Not the load average: the deployed tenants' own health
# checks keep it above the cores at rest (compose's N=10, every 2-3 s),
# where the CPU is mostly idle. busy_pct is bench-lib.sh's. Both sides
# wait alike.
settle() {
  local waited=0 quiet=0 busy
  while ((quiet < 2 && waited < 300)); do
    busy=$(busy_pct)
    waited=$((waited + 5))
    if ((busy < 50)); then quiet=$((quiet + 1)); else quiet=0; fi
  done
  ((waited <= 10)) || echo "    (waited ${waited}s for the host to settle: CPU ${busy}% busy, load average $(cut -d' ' -f1-3 /proc/loadavg))"
}

# note prints a measurement: label, seconds, and anything more.
note() { printf '  %-46s %6ss%s\n' "$1" "$2" "${3:+  $3}"; }
# note_mib prints a memory measurement.
note_mib() { printf '  %-46s %6s MiB\n' "$1" "$2"; }

# Results, by scenario; failed_* are "failed/sent" of the request loop.
# shellcheck disable=SC2034 # pulumi_failed is read by table, through its nameref
declare -A pulumi_s compose_s pulumi_failed compose_failed
declare -A n100_s n100_failed
# pulumi_cpu and n100_cpu: the orchestrator's CPU-seconds of a Pulumi cold
# up and release, by scenario.
declare -A pulumi_cpu n100_cpu
# cpu_splits: cpu_split (bench-lib.sh) of each side's cold ups and of
# Pulumi's releases, by "<side> <scenario>", for the per-tenant split.
declare -A cpu_splits
scenarios=("cold N=10" "cold N=30" "no-op N=10" "release N=10" "add t11 to N=10" "idle RAM N=10")

# --- setup (untimed) ------------------------------------------------------
compose_version=$(docker-compose version --short 2>/dev/null || docker-compose --version)
engine=$(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "bench-compose: pulumi vs docker-compose, same tenants, images, gating and subnets"
echo "  compose client: docker-compose $compose_version (python, Debian package); file format 2.4, COMPOSE_PARALLEL_LIMIT=$COMPOSE_PARALLEL_LIMIT COMPOSE_HTTP_TIMEOUT=$COMPOSE_HTTP_TIMEOUT"
[ -z "$n100" ] || echo "  compose health checks: every 2 s (databases) and 3 s (apps), at N=$big every $large_interval (BENCH_COMPOSE_LARGE_INTERVAL;
                  compose gates on a container's first check, which this engine runs one interval after its start)"
echo "  migrations:     $migrations, both sides (BENCH_MIGRATIONS; polls:migrations, composegen -migrations)"
echo "  docker engine:  $engine, storage driver $(docker info --format '{{.Driver}}'), cgroup $(docker info --format '{{.CgroupVersion}}')"
if [ -z "$compose_only" ]; then
  echo "  pulumi:         $(pulumi version), plugins docker 4.10.0 and random 4.19.0, file backend, PULUMI_PARALLEL=$PULUMI_PARALLEL GOGC=$GOGC${pulumi_env[*]:+ ${pulumi_env[*]}}"
fi
echo "  host:           $(nproc) cores (${cpu:-unknown CPU}), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "setup (untimed):"

# A snapshot of the repo (the working tree, or the commit BENCH_REV names):
# concurrent edits cannot change what is measured, and stack config files
# stay out of the working tree.
mkdir -p "$src" "$work/bin"
if [ -n "${BENCH_REV:-}" ]; then
  rev=$(git -C "$root" rev-parse --verify "$BENCH_REV^{commit}") || die "BENCH_REV=$BENCH_REV names no commit"
  git -C "$root" archive "$rev" | tar -C "$src" -xf -
  rm -f "$src"/Pulumi.*.yaml
  echo "  source:         commit $rev (BENCH_REV=$BENCH_REV)"
else
  tar -C "$root" --exclude=./.git --exclude=./.pulumi-state --exclude=./.e2e --exclude='./Pulumi.*.yaml' -cf - . | tar -C "$src" -xf -
  dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | awk '{ print $2 }' | tr '\n' ' ')
  echo "  source:         working tree at $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')${dirty:+, uncommitted changes in: $dirty}"
fi
(cd "$src/app" && go mod download) >>"$log" 2>&1
(cd "$src" && go build -o "$work/bin/modproxy" ./tools/modproxy && go build -o "$work/bin/composegen" ./tools/composegen) >>"$log" 2>&1

start_module_proxy
clock
build_app "$app_image"
note "app image warm build ($app_image)" "$(seconds)"
echo "  compose runs it; each Pulumi stack first builds its own once, untimed (its build label differs)"
if [ -z "$compose_only" ]; then
  clock
  # The flags pulumi-language-go builds the program with, so its build
  # finds every package compiled.
  (cd "$src" && go build -buildvcs=false -trimpath -ldflags "-w -s" -o /dev/null .) >>"$log" 2>&1
  note "Go build cache warm (go build -trimpath .)" "$(seconds)"
fi

# --- compose --------------------------------------------------------------
# compose_apply runs `docker-compose ... up -d` (the command and its flags
# up to `up` given) until it exits 0, at most three times, as an operator
# reruns it: compose 1.29 gives up on the whole `up` when a service it
# gates on turns unhealthy ("Container ... is unhealthy"), which the
# tenants' 2 s / 3 s checks do under the load of a cold N=100 on 2 cores.
# Each run's output goes to the log; each failed run's reason (its last
# ERROR line) to $work/reruns, which compose_reruns reads. Fails when the
# third run does, or at once when a run timed out waiting for the engine
# (at N=100 each such run took its full 610 s, three times over, and a
# rerun met the same engine).
compose_apply() {
  local i
  : >"$work/reruns"
  for i in 1 2 3; do
    if "$@" up -d >"$work/compose.out" 2>&1; then
      cat "$work/compose.out" >>"$log"
      return 0
    fi
    cat "$work/compose.out" >>"$log"
    echo "run $i: $(grep -E '^ERROR' "$work/compose.out" | tail -n 1)" >>"$work/reruns"
    echo "compose up -d failed (run $i of at most 3)" >>"$log"
    ! grep -q 'Read timed out' "$work/compose.out" || break
  done
  return 1
}
# compose_reruns prints, when the last compose_apply needed more than one
# run, how many and why the others failed.
compose_reruns() {
  [ -s "$work/reruns" ] || return 0
  echo "compose needed $(($(wc -l <"$work/reruns") + 1)) runs of up -d; $(paste -sd ';' "$work/reruns")"
}

bench_compose() {
  local n=$1 project=polls-bc$1-$id dir=$work/compose-$1 port added
  compose_step="cold N=$n"
  port=$(free_port)
  pool_check
  local gen=("$work/bin/composegen" -out "$dir" -port "$port" -project "$project" -taken "$taken" -migrations "$migrations")
  [ "$n" != "$big" ] || gen+=(-health-interval "$large_interval")
  "${gen[@]}" -n "$n" >>"$log"
  compose_up="$project $dir"
  local compose=(docker-compose -p "$project" -f "$dir/docker-compose.yml")

  settle
  clock
  cpu_mark
  cpu_of compose_apply "${compose[@]}"
  # shellcheck disable=SC2046 # one argument per tenant
  answer "$port" "" $(tenant_list "$n")
  compose_s["cold N=$n"]=$(seconds)
  note "compose cold N=$n" "${compose_s["cold N=$n"]}" "$(compose_reruns)"
  cpu_report "${compose_s["cold N=$n"]}"
  cpu_splits["compose cold N=$n"]=$cpu_split

  if [ "$n" = 10 ]; then
    settle
    clock
    "${compose[@]}" up -d >>"$log" 2>&1
    compose_s["no-op N=10"]=$(seconds)
    note "compose no-op up -d (reruns migrations)" "${compose_s["no-op N=10"]}"
  fi
  if [ "$n" = 10 ] || [ "$n" = "$big" ]; then
    compose_step="release N=$n"
    # A release: build the new version, point the file at it, up -d.
    "${gen[@]}" -n "$n" -app-image "$app_image_v2" >>"$log"
    settle
    hammer_start "$port" t01 t02 t03
    clock
    build_app "$app_image_v2" VERSION=2
    built=$(seconds)
    compose_apply "${compose[@]}"
    # shellcheck disable=SC2046 # one argument per tenant
    answer "$port" 2 $(tenant_list "$n")
    compose_s["release N=$n"]=$(seconds)
    hammer_stop
    compose_failed["release N=$n"]=$hammered
    note "compose release (build + up -d)" "${compose_s["release N=$n"]}" "failed/sent ${compose_failed["release N=$n"]}; the build took ${built}s$(compose_reruns | sed 's/^/; /')"

    added=$(printf 't%02d' $((n + 1)))
    compose_step="add $added to N=$n"
    "${gen[@]}" -n $((n + 1)) -app-image "$app_image_v2" >>"$log"
    settle
    hammer_start "$port" t01 t02 t03
    clock
    serve_watch "$port" "$added"
    compose_apply "${compose[@]}"
    ended=$(seconds)
    answer "$port" "" "$added"
    compose_s["add $added to N=$n"]=$(served_at)
    hammer_stop
    compose_failed["add $added to N=$n"]=$hammered
    note "compose add $added (until it serves)" "${compose_s["add $added to N=$n"]}" "up -d ended at ${ended}s; failed/sent ${compose_failed["add $added to N=$n"]}$(compose_reruns | sed 's/^/; /')"
  fi
  if [ "$n" = 10 ]; then
    ram_per_tenant "$project" 11
    compose_s["idle RAM N=10"]=$mib
    note_mib "compose idle RAM per tenant ($count containers, 11 tenants)" "$mib"
  fi
  compose_down "$compose_up"
  compose_up=""
  if [ "$n" = 10 ] || [ "$n" = "$big" ]; then
    # The Pulumi side's VERSION=2 build starts from the cache compose's did.
    docker image rm "$app_image_v2" >>"$log" 2>&1 || true
    remove_build_stages VERSION=2
  fi
}

# compose_big runs bench_compose at N=big in a subshell of its own, so
# that a failed step ends only compose's side (see the header): the
# subshell hands its results back through a file, whatever way it ends,
# and sets compose_big_failed to the step that failed and why.
compose_big_failed=""
compose_big() {
  local results=$work/compose-big.results status project=polls-bc$big-$id
  # Set here too: the subshell's own copy cannot tell this shell's cleanup
  # that a deployment exists.
  compose_up="$project $work/compose-$big"
  set +e
  : >"$work/reruns"
  (
    set -e
    exec 2> >(tee "$work/compose-big.err" >&2)
    # shellcheck disable=SC2030,SC2031 # the subshell's own copies
    trap 'set +e; [ -n "$hammer" ] && kill "$hammer" 2>/dev/null; declare -p compose_s compose_failed compose_step cpu_splits >"$results"' EXIT
    bench_compose "$big"
  )
  status=$?
  set -e
  # declare -p prints declarations; -g keeps them global here.
  # shellcheck disable=SC1090
  . <(sed -E 's/^declare -(-|([A-Za-z]+)) /declare -g\2 /' "$results")
  if [ "$status" = 0 ]; then
    compose_up="" # bench_compose took it down
    return 0
  fi
  # Why: the message the step died with, else compose's last ERROR line.
  local why
  why=$(sed -n 's/^bench-compose: //p' "$work/compose-big.err" | tail -n 1)
  [ -n "$why" ] || why=$(tail -n 1 "$work/reruns" | sed 's/^run [0-9]*: //')
  compose_big_failed="$compose_step: ${why:-exit status $status} (the log has the rest)"
  echo "  compose at N=$big failed at $compose_big_failed"
  echo "  taking compose's deployment down, then checking that the engine answers"
  compose_down "$compose_up"
  compose_up=""
  timeout 60 docker ps -q >/dev/null 2>&1 && timeout 60 docker info >/dev/null 2>&1 ||
    die "the Docker engine does not answer docker ps / docker info within 60 s after compose's failure at N=$big: restart dockerd (README, Performance), then run again"
  local left
  left=$(timeout 60 docker ps -aq --filter "label=polls.stack=$project" | wc -l)
  [ "$left" = 0 ] || die "$left of compose's containers at N=$big are left after docker-compose down: remove them (docker ps -a --filter label=polls.stack=$project), then run again"
  docker image rm "$app_image_v2" >>"$log" 2>&1 || true
  remove_build_stages VERSION=2
  echo "  the engine answers; the Pulumi side runs"
}

# --- pulumi ---------------------------------------------------------------
# bench_pulumi runs the scenarios for n tenants; results go into the arrays
# named by $2 (seconds), $3 (failed requests) and $4 (the orchestrator's
# CPU-seconds of the cold up and the release).
# shellcheck disable=SC2034 # the caller reads res_cpu, through its nameref
bench_pulumi() {
  local n=$1 stack=bench-$1-$id port next
  local -n res_s=$2 res_f=$3 res_cpu=$4
  port=$(free_port)
  mkdir -p "$work/state"
  pulumi -C "$src" stack init "$stack" --non-interactive >>"$log" 2>&1
  stack_up=$stack
  # up runs pulumi up, keeping its output for the change summary.
  # It runs under scripts/cpu-by-process.py: by_process then prints where
  # the orchestrator's CPU went (the CLI's own figure is the engine's).
  up() { pulumi_split up --yes --skip-preview -s "$stack_up"; }
  # Previews as the preview workflow runs them (README, "Performance").
  preview() { PULUMI_PARALLEL_DIFF=true pulumi_split preview -s "$stack_up"; }
  pulumi_split() { python3 "$root/scripts/cpu-by-process.py" "$work/split" /dev/null pulumi -C "$src" "$@" 2>&1 | tee -a "$log" >"$work/up.out"; }
  by_process() { echo "    CPU-s by process under pulumi: pulumi (the engine) $(cut -d' ' -f1 "$work/split"), $(cat "$work/split.split")"; }
  # changes prints the last command's resource summary, e.g. "~ 3 updated, 93 unchanged".
  changes() {
    awk '/^Resources:/ { on = 1; next } /^Duration/ { on = 0 }
      on && NF { $1 = $1; printf "%s%s", sep, $0; sep = ", " } END { print "" }' "$work/up.out" |
      sed 's/^/    pulumi resources: /'
  }
  set_config() { pulumi -C "$src" config set -s "$stack_up" "$@" >>"$log" 2>&1; }
  # previews KEY LABEL times $n_previews previews of what the stack's
  # config says, each after the host settled, prints each, and records
  # their median as res_s[KEY]: one preview on this shared host read 8.7 s
  # where the next five of the same stack read 6.3-7.7 s.
  previews() {
    local key=$1 label=$2 i times=()
    for ((i = 1; i <= n_previews; i++)); do
      settle
      clock
      preview
      times+=("$(seconds)")
      note "$label ($i of $n_previews)" "${times[-1]}"
      by_process
      [ "$i" -lt "$n_previews" ] || changes
    done
    res_s[$key]=$(printf '%s\n' "${times[@]}" | median)
    note "$label, median of $n_previews" "${res_s[$key]}"
  }
  set_config polls:httpPort "$port"
  set_config polls:postgresImage polls-local/postgres:15
  set_config polls:nginxImage polls-local/nginx:1
  set_config polls:appBuildNetwork host
  set_config polls:appBuildArgs "$(pulumi_args)"
  # Compose's side has no backups: compare like with like (make
  # bench-backup measures what backups cost).
  set_config polls:backups false
  set_config polls:migrations "$migrations"
  set_config polls:tenants "$(tenant_json "$n")"

  # The warm build above is not this stack's: app/Dockerfile labels its
  # build with the stack's prefix (POLLS_BUILD) before the dependency
  # layers, so every stack compiles them once. Warm this stack's, untimed,
  # with its own builder: an up of the app image alone, then drop the
  # image from the state so that the cold up builds it again (from the
  # cache, as compose's up uses its build).
  local image_urn="urn:pulumi:$stack::polls::docker:index/image:Image::app"
  clock
  pulumi -C "$src" up --yes --skip-preview -s "$stack" --target "$image_urn" \
    --target "urn:pulumi:$stack::polls::pulumi:providers:docker::docker" >>"$log" 2>&1 || die "the warm build of $stack's app image failed"
  pulumi -C "$src" state delete -s "$stack" --yes "$image_urn" >>"$log" 2>&1 || die "could not drop the warm app image from $stack's state"
  note "pulumi app image warm build, N=$n (untimed)" "$(seconds)"

  settle
  clock
  cpu_mark
  cpu_of up
  # shellcheck disable=SC2046 # one argument per tenant
  answer "$port" "" $(tenant_list "$n")
  res_s["cold N=$n"]=$(seconds)
  res_cpu["cold N=$n"]=$cpu_orch
  built=$(sed -n 's/.*docker:index:Image app created (\([0-9.]*s\)).*/\1/p' "$work/up.out" | sed -n 1p)
  note "pulumi cold N=$n" "${res_s["cold N=$n"]}" "the image build took ${built:-?}"
  cpu_report "${res_s["cold N=$n"]}"
  cpu_splits["pulumi cold N=$n"]=$cpu_split
  by_process
  changes

  if [ "$n" = 10 ] || [ "$n" = "$big" ]; then
    previews "no-op N=$n" "pulumi no-op preview"

    set_config polls:appBuildArgs "$(pulumi_args VERSION=2)"
    settle
    hammer_start "$port" t01 t02 t03
    clock
    cpu_mark
    cpu_of up
    # shellcheck disable=SC2046 # one argument per tenant
    answer "$port" 2 $(tenant_list "$n")
    res_s["release N=$n"]=$(seconds)
    res_cpu["release N=$n"]=$cpu_orch
    hammer_stop
    res_f["release N=$n"]=$hammered
    built=$(sed -n 's/.*docker:index:Image app updated (\([0-9.]*s\)).*/\1/p' "$work/up.out" | sed -n 1p)
    note "pulumi release (up, builds VERSION=2)" "${res_s["release N=$n"]}" "failed/sent ${res_f["release N=$n"]}; the image build took ${built:-?}"
    cpu_report "${res_s["release N=$n"]}"
    cpu_splits["pulumi release N=$n"]=$cpu_split
    by_process
    changes

    next=$(printf 't%02d' $((n + 1)))
    set_config polls:tenants "$(tenant_json $((n + 1)))"
    # What a reviewer of the PR that adds the tenant waits for.
    previews "preview add $next to N=$n" "pulumi preview of adding $next"
    settle
    hammer_start "$port" t01 t02 t03
    clock
    serve_watch "$port" "$next"
    up
    ended=$(seconds)
    answer "$port" "" "$next"
    res_s["add $next to N=$n"]=$(served_at)
    hammer_stop
    res_f["add $next to N=$n"]=$hammered
    note "pulumi add $next (until it serves)" "${res_s["add $next to N=$n"]}" "pulumi up ended at ${ended}s; failed/sent ${res_f["add $next to N=$n"]}"
    by_process
    changes

    ram_per_tenant "polls-$stack" $((n + 1))
    res_s["idle RAM N=$n"]=$mib
    note_mib "pulumi idle RAM per tenant ($count containers, $((n + 1)) tenants)" "$mib"
  fi
  stack_down "$stack"
  stack_up=""
  remove_build_stages VERSION=2
}

echo "runs (cold: until every tenant answers 200 through nginx; failed/sent: request loop on t01..t03):"
for n in "${small[@]}"; do
  bench_compose "$n"
  [ -n "$compose_only" ] || bench_pulumi "$n" pulumi_s pulumi_failed pulumi_cpu
done

# table prints the named scenarios' results: pulumi's (seconds, or MiB for
# idle RAM, and failed requests, from the arrays named by $1 and $2)
# against compose's, and their ratio.
table() {
  local -n t_s=$1 t_f=$2
  shift 2
  local s p c unit
  printf '  %-26s %9s %9s %7s %15s %15s\n' scenario pulumi compose ratio "pulumi failed" "compose failed"
  for s in "$@"; do
    p=${t_s[$s]:-} c=${compose_s[$s]:-}
    unit=s
    [[ $s != idle* ]] || unit=M
    awk -v s="$s" -v p="$p" -v c="$c" -v u="$unit" -v pf="${t_f[$s]:--}" -v cf="${compose_failed[$s]:--}" 'BEGIN {
      ps = p == "" ? "-" : sprintf("%.1f%s", p, u); cs = c == "" ? "-" : sprintf("%.1f%s", c, u)
      r = (p == "" || c == "" || c == 0) ? "-" : sprintf("%.2f", p / c)
      printf "  %-26s %9s %9s %7s %15s %15s\n", s, ps, cs, r, pf, cf
    }'
  done
}

echo "results (seconds; ratio = pulumi / compose; failed = failed/sent requests to t01..t03 during the step):"
table pulumi_s pulumi_failed "${scenarios[@]}"
echo "  (no-op: pulumi preview vs compose up -d; idle RAM: MiB per tenant, N=10 plus t11)"
echo "  load average $(cut -d' ' -f1-3 /proc/loadavg) after the N=10/30 runs ($(nproc) cores, shared)"

if [ -n "$n100" ]; then
  echo "both sides, N=$big (BENCH_N100=1):"
  compose_big
  bench_pulumi "$big" n100_s n100_failed n100_cpu
  nx=$(printf 't%02d' $((big + 1)))
  echo "results N=$big (seconds; failed = failed/sent requests to t01..t03 during the step):"
  table n100_s n100_failed "cold N=$big" "release N=$big" "add $nx to N=$big" "no-op N=$big" "preview add $nx to N=$big" "idle RAM N=$big"
  # aim prints one of issue 20's aims: what, the figure, its bound, and
  # whether the figure is within it.
  aim() {
    awk -v what="$1" -v v="$2" -v bound="$3" -v unit="$4" 'BEGIN {
      if (v == "") { printf "  %-58s %10s  (aim <= %s%s)\n", what, "-", bound, unit; exit }
      printf "  %-58s %10s  (aim <= %s%s: %s)\n", what, sprintf("%.2f%s", v, unit), bound, unit, v + 0 <= bound + 0 ? "met" : "not met"
    }'
  }
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b + 0 > 0) printf "%.3f", a / b }'; }
  echo "issue 20's aims, N=$big against N=10 and compose, this run:"
  [ -z "$compose_big_failed" ] || echo "  (compose at N=$big failed at $compose_big_failed: its figures from that step on are \"-\")"
  aim "release to every tenant at N=$big, s" "${n100_s["release N=$big"]:-}" 240 s
  aim "  the same, pulumi / compose" "$(ratio "${n100_s["release N=$big"]:-}" "${compose_s["release N=$big"]:-}")" 1.5 x
  printf '  %-58s %10s\n' "  failed requests, pulumi / compose" "${n100_failed["release N=$big"]:--} / ${compose_failed["release N=$big"]:--}"
  aim "no-op pulumi preview at N=$big, median of $n_previews, s" "${n100_s["no-op N=$big"]:-}" 8 s
  aim "pulumi preview of adding $nx, median of $n_previews, s" "${n100_s["preview add $nx to N=$big"]:-}" 8 s
  aim "adding $nx until it serves, s" "${n100_s["add $nx to N=$big"]:-}" 15 s
  printf '  %-58s %10s\n' "  failed requests of the others, pulumi / compose" "${n100_failed["add $nx to N=$big"]:--} / ${compose_failed["add $nx to N=$big"]:--}"
  for step in cold release; do
    a=$(ratio "${pulumi_cpu["$step N=10"]:-}" 10) b=$(ratio "${n100_cpu["$step N=$big"]:-}" "$big")
    printf '  %-58s %10s\n' "orchestrator CPU-s per tenant, $step, N=10 / N=$big" "$a / $b"
    aim "  N=$big / N=10" "$(ratio "$b" "$a")" 1.3 x
  done
  # The host's busy CPU-seconds of each cold up and release, split as
  # cpu_report splits them, per tenant.
  printf '  %-40s %12s %12s %12s %12s\n' "CPU-s per tenant" orchestrator dockerd+ctrd containers "kernel, rest"
  for key in "pulumi cold N=10" "pulumi cold N=$big" "compose cold N=10" "compose cold N=$big" "pulumi release N=10" "pulumi release N=$big"; do
    awk -v n="${key##*=}" -v key="$key" '{
      printf "    %-38s", key
      for (i = 1; i <= 4; i++) printf " %12s", NF != 4 ? "-" : $i == "n/a" ? "n/a" : sprintf("%.3f", $i / n)
      print ""
    }' <<<"${cpu_splits[$key]:-}"
  done
  for n in "${small[@]}" "$big"; do
    p=${pulumi_s["cold N=$n"]:-${n100_s["cold N=$n"]:-}}
    aim "cold up at N=$n, pulumi / compose" "$(ratio "$p" "${compose_s["cold N=$n"]:-}")" 1.0 x
  done
  echo "  load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
fi
