#!/usr/bin/env bash
# Times `pulumi up` of the stack against `docker-compose up -d` of the
# equivalent compose file, in one run, and prints the ratios.
#
#   scripts/bench-compose.sh                        # or: make bench-compose
#   BENCH_COMPOSE_ONLY=1 scripts/bench-compose.sh   # the compose half only
#   BENCH_LOG=/tmp/bench.log scripts/bench-compose.sh   # keep the full log
#
# Scenarios; each is timed from the command's start until every tenant
# concerned answers 200 through nginx (curl -H 'Host: tNN.polls.local'):
#
#   cold N=2, N=10  pulumi up of a new stack with tenants t01..tNN, against
#                   docker-compose up -d of the file tools/composegen writes
#                   for the same tenants
#   add t11         on the N=10 deployment: pulumi up after adding t11 to
#                   polls:tenants, against regenerating the compose file for
#                   11 tenants and docker-compose up -d (compose's way: nginx
#                   is recreated, every migration runs again)
#   no-op           pulumi up with nothing changed, against docker-compose
#                   up -d with nothing changed (command duration only; the
#                   output shows what pulumi up changed nonetheless)
#
# Fairness: both sides run the same images (the local polls-local/* images
# and the app built from app/), health checks, init, memory limits, gating
# (migration after a healthy database, app after a successful migration) and
# nginx config (rendered by the nginx package). The app image is built once
# before any timing; the compose side runs that build (polls-bench-app), and
# Pulumi's own build of the same context and build args hits its layer cache.
# The Pulumi program's Go build cache is warmed first, with the flags
# pulumi-language-go builds it with. Only one deployment exists at a time;
# each is torn down before the next starts.
#
# Compose client: docker-compose 1.29.2 from Debian (apt-get install
# docker-compose), file format 2.4. tools/composegen's tests keep each
# service equal to the container the program declares.
#
# Needs: a Docker engine, docker-compose, curl, go, python3, the local images
# (scripts/images.sh), and unless BENCH_COMPOSE_ONLY is set the Pulumi CLI,
# pulumi-language-go and the docker 4.10.0 and random 4.19.0 plugins. The
# Pulumi side runs on a copy of the repo with a throwaway stack on a file
# backend in a temp dir. Everything created is removed on exit, also on
# failure or Ctrl-C: stacks (destroy, stack rm, retained pgdata volumes),
# compose projects (down -v), images, the module proxy and the temp dir.
set -euo pipefail
export LC_ALL=C PULUMI_SKIP_UPDATE_CHECK=1
cd "$(dirname "$0")/.."
root=$PWD
compose_only=${BENCH_COMPOSE_ONLY:-}
app_image=polls-bench-app:latest
images=(polls-local/postgres:15 polls-local/nginx:1 polls-local/golang:1.23 polls-local/static:bookworm)

die() {
  echo "bench-compose: $*" >&2
  exit 1
}

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
log=$work/bench.log
id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
src=$work/src
# The Pulumi side's state and secrets live and die with the temp dir.
export PULUMI_BACKEND_URL=file://$work/state
PULUMI_CONFIG_PASSPHRASE=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
export PULUMI_CONFIG_PASSPHRASE
proxy=""
build_stage="" # the app build's untagged build-stage image, kept by the builder
compose_up=""  # "project dir" of the compose deployment that exists
stack_up=""    # name of the Pulumi stack that exists

compose_down() {
  local project=${1%% *} dir=${1#* }
  docker-compose -p "$project" -f "$dir/docker-compose.yml" down -v --remove-orphans >>"$log" 2>&1 || true
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
  if [ "$status" -ne 0 ] && [ -f "$log" ]; then
    {
      echo "bench-compose: failed; last lines of the log:"
      tail -n 30 "$log"
      [ -z "$compose_up" ] || diagnose "${compose_up%% *}"
      [ -z "$stack_up" ] || diagnose "polls-$stack_up"
    } 2>&1 | tee -a "$log" >&2
  fi
  [ -n "$compose_up" ] && compose_down "$compose_up"
  [ -n "$stack_up" ] && stack_down "$stack_up"
  [ -n "$proxy" ] && kill "$proxy" 2>/dev/null && wait "$proxy" 2>/dev/null
  docker image rm "$app_image" ${build_stage:+"$build_stage"} >/dev/null 2>&1
  [ -z "${BENCH_LOG:-}" ] || cp "$log" "$BENCH_LOG"
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers --------------------------------------------------------------
start=0
clock() { start=$EPOCHREALTIME; }
seconds() { awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

tenant_list() { for ((i = 1; i <= $1; i++)); do printf 't%02d ' "$i"; done; }
tenant_json() { tenant_list "$1" | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().split()))'; }

# answer waits until each named tenant has answered 200 through nginx.
answer() {
  local port=$1 deadline=$((SECONDS + 600)) t code
  shift
  local left=("$@") next
  while :; do
    next=()
    for t in "${left[@]}"; do
      code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' -H "Host: $t.polls.local" "http://127.0.0.1:$port/" || true)
      [ "$code" = 200 ] || next+=("$t")
    done
    ((${#next[@]})) || return 0
    left=("${next[@]}")
    ((SECONDS < deadline)) || die "tenants ${left[*]} did not answer 200 on port $port within 600s"
    sleep 0.2
  done
}

note() { printf '  %-46s %6ss\n' "$1" "$2"; }

declare -A pulumi_s compose_s
scenarios=("cold N=2" "cold N=10" "add t11 to N=10" "no-op N=11")

# --- setup (untimed) ------------------------------------------------------
compose_version=$(docker-compose version --short 2>/dev/null || docker-compose --version)
engine=$(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')
echo "bench-compose: pulumi up vs docker-compose up -d, same tenants, images and gating"
echo "  compose client: docker-compose $compose_version (python, Debian package); file format 2.4"
echo "  docker engine:  $engine"
if [ -z "$compose_only" ]; then
  echo "  pulumi:         $(pulumi version), plugins docker 4.10.0 and random 4.19.0, file backend"
fi
echo "  host:           $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "setup (untimed):"

# A snapshot of the repo: concurrent edits cannot change what is measured,
# and stack config files stay out of the working tree.
mkdir -p "$src" "$work/bin"
tar -C "$root" --exclude=./.git --exclude=./.pulumi-state --exclude=./.e2e --exclude='./Pulumi.*.yaml' -cf - . | tar -C "$src" -xf -
(cd "$src/app" && go mod download) >>"$log" 2>&1
(cd "$src" && go build -o "$work/bin/modproxy" ./tools/modproxy && go build -o "$work/bin/composegen" ./tools/composegen) >>"$log" 2>&1

"$work/bin/modproxy" -addr 127.0.0.1:0 >"$work/proxy.out" 2>>"$log" &
proxy=$!
for _ in $(seq 50); do
  goproxy=$(sed -n 's/^listening on //p' "$work/proxy.out")
  [ -n "$goproxy" ] && break
  sleep 0.1
done
[ -n "$goproxy" ] || die "the module proxy did not start"

build_args=(GO_IMAGE=polls-local/golang:1.23 RUNTIME_IMAGE=polls-local/static:bookworm GOPROXY="$goproxy" GOSUMDB=off)
clock
DOCKER_BUILDKIT=0 docker build --network host -t "$app_image" \
  "${build_args[@]/#/--build-arg=}" "$src/app" >"$work/build.log" 2>&1 || {
  cat "$work/build.log" >>"$log"
  die "docker build of app/ failed"
}
cat "$work/build.log" >>"$log"
# The image the build stage ended with: the step output before the second FROM.
build_stage=$(awk '/^Step [0-9]+\/[0-9]+ : FROM / && ++n == 2 { print id; exit } /^ ---> [0-9a-f]+$/ { id = $2 }' "$work/build.log")
note "app image warm build ($app_image)" "$(seconds)"
echo "  both sides then reuse its layer cache (Pulumi builds the same context and args)"
if [ -z "$compose_only" ]; then
  clock
  # The flags pulumi-language-go builds the program with, so its build
  # finds every package compiled.
  (cd "$src" && go build -buildvcs=false -trimpath -ldflags "-w -s" -o /dev/null .) >>"$log" 2>&1
  note "Go build cache warm (go build -trimpath .)" "$(seconds)"
fi

# --- compose --------------------------------------------------------------
bench_compose() {
  local n=$1 project=polls-bc$1-$id dir=$work/compose-$1 port
  port=$(free_port)
  "$work/bin/composegen" -n "$n" -out "$dir" -port "$port" -project "$project" >>"$log"
  compose_up="$project $dir"
  local compose=(docker-compose -p "$project" -f "$dir/docker-compose.yml")

  clock
  "${compose[@]}" up -d >>"$log" 2>&1
  # shellcheck disable=SC2046 # one argument per tenant
  answer "$port" $(tenant_list "$n")
  compose_s["cold N=$n"]=$(seconds)
  note "compose cold N=$n" "${compose_s["cold N=$n"]}"

  if [ "$n" = 10 ]; then
    "$work/bin/composegen" -n 11 -out "$dir" -port "$port" -project "$project" >>"$log"
    clock
    "${compose[@]}" up -d >>"$log" 2>&1
    answer "$port" t11
    compose_s["add t11 to N=10"]=$(seconds)
    note "compose add t11" "${compose_s["add t11 to N=10"]}"

    clock
    "${compose[@]}" up -d >>"$log" 2>&1
    compose_s["no-op N=11"]=$(seconds)
    note "compose no-op (reruns migrations)" "${compose_s["no-op N=11"]}"
  fi
  compose_down "$compose_up"
  compose_up=""
}

# --- pulumi ---------------------------------------------------------------
bench_pulumi() {
  local n=$1 stack=bench-$1-$id port args
  port=$(free_port)
  args=$(printf '%s\n' "${build_args[@]}" | python3 -c '
import json, sys
print(json.dumps(dict(l.rstrip("\n").split("=", 1) for l in sys.stdin)))')
  mkdir -p "$work/state"
  pulumi -C "$src" stack init "$stack" --non-interactive >>"$log" 2>&1
  stack_up=$stack
  # up runs pulumi up, keeping its output for the change summary.
  up() { pulumi -C "$src" up --yes --skip-preview -s "$stack_up" 2>&1 | tee -a "$log" >"$work/up.out"; }
  # changes prints the last update's resource summary, e.g. "~ 3 updated, 93 unchanged".
  changes() {
    awk '/^Resources:/ { on = 1; next } /^Duration/ { on = 0 }
      on && NF { $1 = $1; printf "%s%s", sep, $0; sep = ", " } END { print "" }' "$work/up.out" |
      sed 's/^/    pulumi resources: /'
  }
  set_config() { pulumi -C "$src" config set -s "$stack_up" "$@" >>"$log" 2>&1; }
  set_config polls:httpPort "$port"
  set_config polls:postgresImage polls-local/postgres:15
  set_config polls:nginxImage polls-local/nginx:1
  set_config polls:appBuildNetwork host
  set_config polls:appBuildArgs "$args"
  set_config polls:tenants "$(tenant_json "$n")"

  clock
  up
  # shellcheck disable=SC2046 # one argument per tenant
  answer "$port" $(tenant_list "$n")
  pulumi_s["cold N=$n"]=$(seconds)
  note "pulumi cold N=$n" "${pulumi_s["cold N=$n"]}"

  if [ "$n" = 10 ]; then
    set_config polls:tenants "$(tenant_json 11)"
    clock
    up
    answer "$port" t11
    pulumi_s["add t11 to N=10"]=$(seconds)
    note "pulumi add t11" "${pulumi_s["add t11 to N=10"]}"
    changes

    clock
    up
    pulumi_s["no-op N=11"]=$(seconds)
    note "pulumi no-op" "${pulumi_s["no-op N=11"]}"
    changes
  fi
  stack_down "$stack"
  stack_up=""
}

echo "runs (each until every tenant concerned answers 200 through nginx):"
for n in 2 10; do
  bench_compose "$n"
  [ -n "$compose_only" ] || bench_pulumi "$n"
done

echo "results (seconds; ratio = pulumi / compose):"
for s in "${scenarios[@]}"; do
  if [ -n "$compose_only" ]; then
    printf '  %-16s compose %6.1fs\n' "$s:" "${compose_s[$s]}"
  else
    awk -v s="$s:" -v p="${pulumi_s[$s]}" -v c="${compose_s[$s]}" \
      'BEGIN { printf "  %-16s pulumi %6.1fs  compose %6.1fs  ratio %5.2f\n", s, p, c, p / c }'
  fi
done
echo "  load average $(cut -d' ' -f1-3 /proc/loadavg) at the end ($(nproc) cores, shared)"
