#!/usr/bin/env bash
# Times the Pulumi stack on polls:platform swarm against `docker stack
# deploy` of the equivalent stack file (tools/stackgen), in one run, on the
# two-node Swarm of scripts/swarm-cluster.sh, and prints pulumi / stack
# ratios and the requests that failed during each side's release.
#
#   scripts/bench-swarm.sh                          # or: make bench-swarm
#   BENCH_LOG=/tmp/bench.log scripts/bench-swarm.sh # keep the full log
#   BENCH_MIGRATIONS=app scripts/bench-swarm.sh     # both sides with polls:migrations app
#
# Scenarios, N=10 tenants t01..t10 ("answers" means through the router on
# 127.0.0.1 with curl -H 'Host: tNN.polls.local'):
#
#   cold     pulumi up of a new stack (its app image build, a layer-cache
#            hit, and push included), against docker build (the same cache
#            hit) + docker push + docker stack deploy of the file stackgen
#            writes; until every tenant answers 200. Also when the stack's
#            services have converged (every db and app replica running),
#            which `pulumi up` waits for before it returns.
#   release  a new app version, VERSION=2: pulumi config set
#            polls:appBuildArgs with VERSION=2 and pulumi up, against docker
#            build --build-arg VERSION=2 + push + regenerate the file with the
#            new digest + docker stack deploy; until every tenant answers
#            with X-Polls-Version: 2, and for the stack also until every app
#            service's rolling update completed. A request loop (one thread
#            per tenant, a GET every 50 ms to t01..t03, 5 s timeout) runs
#            through the step and counts answers other than 200.
#
# Fairness: the same cluster, images (app built from app/ with the build
# args scripts/bench-compose.sh uses, PostgreSQL pushed to the cluster's
# registry and pre-pulled on both nodes, the local nginx image on the
# manager), health checks, replicas, update config, placement and nginx
# config; tools/stackgen's tests keep each service equal to what swarm/
# declares. The stack side runs first; then its VERSION=2 image and build
# stages are removed, and its app images on the worker, so the Pulumi side
# builds and pulls from the same state. Fresh volumes for each side: each
# side's volumes are removed on both nodes before the next starts. What a
# stack cannot do: gate (its migration is a service restarted on failure,
# the app starts at once); the program gates and waits.
#
# The cluster: if scripts/swarm-cluster.sh reports it up, it is used and left
# up; otherwise this script brings it up and takes it down at the end.
#
# Needs: root, what scripts/swarm-cluster.sh needs, curl, go, python3, the
# local images (scripts/images.sh), the Pulumi CLI, pulumi-language-go and
# the docker 4.10.0 and random 4.19.0 plugins. Everything created is removed
# on exit, also on failure or Ctrl-C: the request loop, the docker stack
# (stack rm, its volumes on both nodes), the Pulumi stack (destroy, stack rm,
# retained volumes on both nodes, the node labels it set), the images this
# run tagged or pulled on both nodes and their build stages, their manifests
# in the registry (blobs stay until the registry is collected or the cluster
# goes down), the module proxy and the temp dir.
set -euo pipefail
export LC_ALL=C PULUMI_SKIP_UPDATE_CHECK=1
export PULUMI_PARALLEL=${PULUMI_PARALLEL:-64} GOGC=${GOGC:-400}
[ -z "${BENCH_LOG:-}" ] || BENCH_LOG=$(realpath -m -- "$BENCH_LOG") # before the cd
cd "$(dirname "$0")/.."
root=$PWD
n=10
# polls:migrations on both sides: container (a migration per tenant, the
# stack's a migrate service) or app (each app task migrates as it starts;
# stackgen -migrations app writes no migrate service).
migrations=${BENCH_MIGRATIONS:-container}
images=(polls-local/postgres:15 polls-local/nginx:1 polls-local/golang:1.26 polls-local/static:bookworm)

die() {
  echo "bench-swarm: $*" >&2
  exit 1
}

[[ $migrations == container || $migrations == app ]] || die "BENCH_MIGRATIONS=$migrations: use container (the default) or app, as polls:migrations"

# --- what is missing, all at once, before anything is created -------------
missing=()
[ "$(id -u)" = 0 ] || missing+=("root (the cluster needs a network namespace and a second engine)")
for tool in curl go python3 pulumi pulumi-language-go; do
  command -v "$tool" >/dev/null || missing+=("$tool on PATH")
done
if ! command -v docker >/dev/null; then
  missing+=("the docker CLI")
elif ! docker info >/dev/null 2>&1; then
  missing+=("a running Docker engine (docker info fails)")
else
  for img in "${images[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 || missing+=("image $img (run scripts/images.sh)")
  done
fi
if command -v pulumi >/dev/null; then
  plugins=$(pulumi plugin ls --json 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin) or []:
    print(p["kind"], p["name"], p["version"].lstrip("v"))' 2>/dev/null || true)
  for want in "resource docker 4.10.0" "resource random 4.19.0"; do
    grep -qx "$want" <<<"$plugins" || missing+=("the Pulumi plugin $want (not in pulumi plugin ls)")
  done
fi
if ((${#missing[@]})); then
  printf -v list '\n  - %s' "${missing[@]}"
  die "cannot run, missing:$list"
fi

# --- state and cleanup ----------------------------------------------------
work=$(mktemp -d /tmp/bench-swarm.XXXXXX)
# The log goes straight to BENCH_LOG when set: it is all there, however
# the run ends (a copy at exit was lost once, when a run ended without it).
log=${BENCH_LOG:-$work/bench.log}
: >"$log"
id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
src=$work/src
export PULUMI_BACKEND_URL=file://$work/state
PULUMI_CONFIG_PASSPHRASE=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
export PULUMI_CONFIG_PASSPHRASE
proxy="" goproxy="" hammer=""
brought_up=""  # set when this run brought the cluster up
cluster=""     # set once the cluster's env is loaded
docker_stack="" # name of the docker stack that exists
stack_up=""    # name of the Pulumi stack that exists
pulumi_stack=sb-$id          # its resources are named polls-sb-<id>-...
prefix=polls-$pulumi_stack
st=polls-st-$id              # the docker stack
ours_re="/(sb-$id-|polls-sb-$id-)" # repositories this run pushes

d2() { docker -H "$POLLS_SWARM_N2_HOST" "$@"; }
on_both() { docker "$@" || true; d2 "$@" || true; }

# wait_until runs its command until it succeeds, up to $1 seconds.
wait_until() {
  local limit=$1 deadline
  shift
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

# none_left succeeds once neither node has a container with label $1.
none_left() {
  [ -z "$(docker ps -aq --filter "label=$1")" ] && [ -z "$(d2 ps -aq --filter "label=$1")" ]
}

# stack_down removes the docker stack and its volumes on both nodes.
stack_down() {
  local s=$1 v
  docker stack rm "$s" >>"$log" 2>&1 || true
  wait_until 180 none_left "com.docker.stack.namespace=$s" || echo "containers of $s still there" >>"$log"
  wait_until 60 bash -c "[ -z \"\$(docker network ls -q --filter label=com.docker.stack.namespace=$s)\" ]" || true
  for v in $(docker volume ls -q --filter "label=com.docker.stack.namespace=$s"); do docker volume rm "$v" >>"$log" 2>&1 || true; done
  for v in $(d2 volume ls -q --filter "label=com.docker.stack.namespace=$s"); do d2 volume rm "$v" >>"$log" 2>&1 || true; done
}

# pulumi_down destroys the Pulumi stack and removes what destroy keeps on
# purpose (the data volumes, the nodes' data labels) or leaves after a
# failed update.
pulumi_down() {
  local s=$1 node l v
  pulumi -C "$src" destroy --yes --skip-preview -s "$s" >>"$log" 2>&1 || true
  pulumi -C "$src" stack rm --yes --force -s "$s" >>"$log" 2>&1 || true
  docker service ls -q --filter "label=polls.stack=$prefix" | xargs -r docker service rm >>"$log" 2>&1 || true
  docker ps -aq --filter "label=polls.stack=$prefix" | xargs -r docker rm -f >>"$log" 2>&1 || true
  wait_until 180 none_left "polls.stack=$prefix" || echo "containers of $prefix still there" >>"$log"
  docker secret ls -q --filter "label=polls.stack=$prefix" | xargs -r docker secret rm >>"$log" 2>&1 || true
  docker network ls -q --filter "name=$prefix-" | xargs -r docker network rm >>"$log" 2>&1 || true
  for v in $(docker volume ls -q | grep "^$prefix-"); do docker volume rm "$v" >>"$log" 2>&1 || true; done
  for v in $(d2 volume ls -q | grep "^$prefix-"); do d2 volume rm "$v" >>"$log" 2>&1 || true; done
  for node in $(docker node ls -q); do
    for l in $(docker node inspect -f '{{range $k, $v := .Spec.Labels}}{{$k}} {{end}}' "$node"); do
      [[ $l != polls.data.$prefix.* ]] || docker node update --label-rm "$l" "$node" >>"$log" 2>&1 || true
    done
  done
}

# our_refs prints the references (repository:tag, repository@digest) of
# this run's images on a node (the command given: docker or d2).
our_refs() {
  "$@" images --digests --format '{{.Repository}} {{.Tag}} {{.Digest}}' 2>/dev/null |
    awk -v re="$ours_re" '$1 ~ re {
      if ($2 != "<none>") print $1 ":" $2
      if ($3 != "<none>") print $1 "@" $3
    }'
}

# ours reports whether image $1 was built by this run: either a build
# stage's step names this run's module proxy among its build args, or it is
# a runtime-stage image of the app (its history copies in
# /usr/local/bin/polls) that did not exist when this run started. The
# runtime stage's history names no build arg, and its steps are often
# layer-cache hits of an earlier run, so the proxy alone misses them.
ours() {
  local h
  [ -n "$goproxy" ] || return 1
  h=$(docker history --no-trunc --format '{{.CreatedBy}}' "$1" 2>/dev/null) || return 1
  grep -qF -- "GOPROXY=$goproxy " <<<"$h" && return 0
  new_since_start images "$1" && grep -qF -- /usr/local/bin/polls <<<"$h"
}

# snapshot records the IDs of all containers and images before anything is
# built, so that cleanup can tell this run's build leftovers from older ones.
snapshot() {
  docker ps -aq --no-trunc 2>/dev/null | sort -u >"$work/containers.before"
  docker images -aq --no-trunc 2>/dev/null | sort -u >"$work/images.before"
}

# new_since_start succeeds if container or image ($1: containers|images)
# $2 was not there when this run started (never without a snapshot).
new_since_start() {
  local id
  [ -f "$work/$1.before" ] || return 1
  if [ "$1" = containers ]; then
    id=$(docker inspect -f '{{.Id}}' "$2" 2>/dev/null) || return 1
  else
    id=$(docker image inspect -f '{{.Id}}' "$2" 2>/dev/null) || return 1
  fi
  ! grep -qxF -- "$id" "$work/$1.before"
}

# build_container reports whether stopped container $1 is a step of one of
# this run's app builds: created by this run from an image of the app's
# build, and a builder step (its command /bin/sh -c ...), not a task.
# The Pulumi provider's builds leave these behind, among them the last
# step's, whose image is a runtime-stage layer-cache hit.
build_container() {
  local img cmd
  new_since_start containers "$1" || return 1
  img=$(docker inspect -f '{{.Image}}' "$1" 2>/dev/null) || return 1
  cmd=$(docker inspect -f '{{json .Config.Cmd}}' "$1" 2>/dev/null) || return 1
  [[ $cmd == '["/bin/sh","-c"'* ]] || return 1
  ours "$img" && return 0
  docker history --no-trunc --format '{{.CreatedBy}}' "$img" 2>/dev/null | grep -qE -- 'GOPROXY=|/usr/local/bin/polls'
}

# remove_images removes this run's references (matching $1, a regexp,
# when given) on the node the command names. By reference, never by ID: the
# pushed PostgreSQL tag shares its ID with the local image it came from.
remove_images() {
  local match=${1:-} ref
  shift
  for ref in $(our_refs "$@"); do
    [ -z "$match" ] || [[ $ref =~ $match ]] || continue
    "$@" image rm "$ref" >>"$log" 2>&1 || true
  done
}

# unregister deletes this run's manifests from the registry (best effort).
unregister() {
  local repo digest
  [ -f "$work/manifests" ] || return 0
  sort -u "$work/manifests" 2>/dev/null | while read -r repo digest; do
    curl -s -o /dev/null --cacert "$POLLS_REGISTRY_CA" -u "$POLLS_REGISTRY_USER:$POLLS_REGISTRY_PASSWORD" \
      -X DELETE "https://$POLLS_REGISTRY/v2/${repo#"$POLLS_REGISTRY"/}/manifests/$digest" || true
  done
}

# note_manifests records this run's image digests on both nodes, for unregister.
note_manifests() {
  { our_refs docker; our_refs d2; } | awk -F@ 'NF == 2 { print $1, $2 }' >>"$work/manifests"
}

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  [ -n "$hammer" ] && kill "$hammer" 2>/dev/null && wait "$hammer" 2>/dev/null
  if [ "$status" -ne 0 ] && [ -f "$log" ]; then
    {
      echo "bench-swarm: failed; last lines of the log:"
      tail -n 40 "$log"
      if [ -n "$cluster" ]; then
        docker service ls --format '  {{.Name}} {{.Replicas}} {{.Image}}' 2>&1 | grep -E "$st|$prefix"
        for s in $(docker service ls -q --filter "label=com.docker.stack.namespace=$st" 2>/dev/null) \
          $(docker service ls -q --filter "label=polls.stack=$prefix" 2>/dev/null); do
          docker service ps --no-trunc --format '  {{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}' "$s" 2>&1 | head -n 4
        done
      fi
    } 2>&1 | tee -a "$log" >&2
  fi
  if [ -n "$cluster" ]; then
    [ -n "$docker_stack" ] && stack_down "$docker_stack"
    [ -n "$stack_up" ] && pulumi_down "$stack_up"
    note_manifests
    remove_images "" docker
    remove_images "" d2
    remove_build_stages
    unregister
  fi
  [ -n "$proxy" ] && kill "$proxy" 2>/dev/null && wait "$proxy" 2>/dev/null
  if [ -n "$brought_up" ]; then
    scripts/swarm-cluster.sh down >>"$log" 2>&1 || echo "bench-swarm: scripts/swarm-cluster.sh down failed; see the log" >&2
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers --------------------------------------------------------------
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"

# converged succeeds once every db and app service of docker stack $1 runs
# all its replicas.
converged() {
  docker service ls --filter "label=com.docker.stack.namespace=$1" --format '{{.Name}} {{.Replicas}}' |
    awk '$1 ~ /-(db|app)$/ { n++; split($2, r, "/"); if (r[1] != r[2]) bad = 1 } END { exit bad || n == 0 }'
}

# updated succeeds once every app service of docker stack $1 finished its
# rolling update; a rollback stops the run.
updated() {
  local states
  # shellcheck disable=SC2046 # one argument per service
  states=$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{else}}none{{end}}' \
    $(docker service ls -q --filter "label=com.docker.stack.namespace=$1" --filter label=polls.role=app))
  if grep -q rollback <<<"$states"; then
    echo "a rolling update was rolled back: $states" >>"$log"
    return 2
  fi
  ! grep -qv '^completed$' <<<"$states"
}

note() { printf '  %-50s %6ss%s\n' "$1" "$2" "${3:+  $3}"; }

# --- the cluster ------------------------------------------------------------
snapshot
if scripts/swarm-cluster.sh env >/dev/null 2>&1; then
  cluster_note="already up (left up)"
else
  brought_up=1
  scripts/swarm-cluster.sh up >>"$log" 2>&1 || die "scripts/swarm-cluster.sh up failed; see above"
  cluster_note="brought up by this run (taken down at the end)"
fi
eval "$(scripts/swarm-cluster.sh env)"
cluster=1
repo=$POLLS_REGISTRY/polls
pg=$repo/sb-$id-postgres:15
app=$repo/sb-$id-app

engine=$(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "bench-swarm: pulumi (polls:platform swarm) vs docker stack deploy, N=$n, same cluster, images and services"
echo "  cluster:        $POLLS_SWARM_N1_NODE (manager, host engine) + $POLLS_SWARM_N2_NODE (worker), registry $POLLS_REGISTRY; $cluster_note"
echo "  docker:         CLI $(docker version --format '{{.Client.Version}}'), engines $engine"
echo "  migrations:     $migrations, both sides (BENCH_MIGRATIONS; polls:migrations, stackgen -migrations)"
echo "  pulumi:         $(pulumi version), plugins docker 4.10.0 and random 4.19.0, file backend, PULUMI_PARALLEL=$PULUMI_PARALLEL GOGC=$GOGC"
echo "  host:           $(nproc) cores (${cpu:-unknown CPU}), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "setup (untimed):"

mkdir -p "$src" "$work/bin"
tar -C "$root" --exclude=./.git --exclude=./.pulumi-state --exclude=./.e2e --exclude='./Pulumi.*.yaml' -cf - . | tar -C "$src" -xf -
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | awk '{ print $2 }' | tr '\n' ' ')
echo "  source:         working tree at $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')${dirty:+, uncommitted changes in: $dirty}"
(cd "$src/app" && go mod download) >>"$log" 2>&1
(cd "$src" && go build -o "$work/bin/modproxy" ./tools/modproxy && go build -o "$work/bin/stackgen" ./tools/stackgen) >>"$log" 2>&1

start_module_proxy
# push_app pushes tag $1 and sets digest_ref to its repository@digest.
digest_ref=""
push_app() {
  docker push "$1" >>"$log" 2>&1 || die "docker push $1 failed"
  digest_ref=$(docker inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$1" | grep -m1 "^${1%:*}@") ||
    die "no registry digest for $1"
}

clock
build_app "$app:v1"
note "app image warm build" "$(seconds)"
clock
docker tag polls-local/postgres:15 "$pg"
docker push "$pg" >>"$log" 2>&1
# The program pins polls:postgresImage to its digest in the registry; the
# stack file names the same pinned reference.
pg_ref=$(docker inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$pg" | grep -m1 "^${pg%:*}@") || die "no registry digest for $pg"
pg_ref=$pg@${pg_ref#*@}
d2 pull "$pg" >>"$log" 2>&1
note "postgres pushed to the registry, pulled on $POLLS_SWARM_N2_NODE" "$(seconds)"
nginx_id=$(docker image inspect -f '{{.Id}}' polls-local/nginx:1)
clock
(cd "$src" && go build -buildvcs=false -trimpath -ldflags "-w -s" -o /dev/null .) >>"$log" 2>&1
note "Go build cache warm (go build -trimpath .)" "$(seconds)"

declare -A pulumi_s stack_s pulumi_failed stack_failed

# --- docker stack deploy ------------------------------------------------------
bench_stack() {
  local port dir=$work/stack
  port=$(free_port)
  gen() { "$work/bin/stackgen" -n "$n" -out "$dir" -port "$port" -project "$st" -nodes "$POLLS_SWARM_N1_NODE,$POLLS_SWARM_N2_NODE" \
    -app-image "$1" -postgres-image "$pg_ref" -nginx-image "$nginx_id" -migrations "$migrations" >>"$log"; }
  deploy() { (cd "$dir" && docker stack deploy --detach=true --with-registry-auth --resolve-image never -c docker-stack.yml "$st") >>"$log" 2>&1; }

  docker_stack=$st
  clock
  build_app "$app:v1"
  push_app "$app:v1"
  gen "$digest_ref"
  deploy
  # shellcheck disable=SC2046 # one argument per tenant
  answer "$port" "" $(tenant_list "$n")
  stack_s[cold]=$(seconds)
  wait_until 600 converged "$st" || die "stack $st did not converge"
  stack_s[cold converged]=$(seconds)
  note "stack cold N=$n (build, push, deploy: every tenant 200)" "${stack_s[cold]}" "converged at ${stack_s[cold converged]}s"

  hammer_start "$port" t01 t02 t03
  clock
  build_app "$app:v2" VERSION=2
  local built
  built=$(seconds)
  push_app "$app:v2"
  gen "$digest_ref"
  deploy
  # shellcheck disable=SC2046 # one argument per tenant
  answer "$port" 2 $(tenant_list "$n")
  stack_s[release]=$(seconds)
  wait_until 900 updated "$st" || die "the app services of $st did not finish their update"
  stack_s[release completed]=$(seconds)
  hammer_stop
  stack_failed[release]=$hammered
  note "stack release (build, push, deploy: every tenant v2)" "${stack_s[release]}" "updates completed at ${stack_s[release completed]}s; failed/sent $hammered; the build took ${built}s"

  stack_down "$st"
  docker_stack=""
  # The Pulumi side builds VERSION=2 from the cache the stack side's did,
  # and pulls its app images on the worker afresh.
  note_manifests
  remove_images "/sb-$id-app[@:]" d2
  # By ID: the tag and the digest reference go, and the stages only v2
  # has; v1's (the build cache) stay.
  docker image rm -f "$(docker image inspect -f '{{.Id}}' "$app:v2")" >>"$log" 2>&1 || true
  remove_build_stages VERSION=2
}

# --- pulumi -----------------------------------------------------------------
bench_pulumi() {
  local port
  port=$(free_port)
  mkdir -p "$work/state"
  pulumi -C "$src" stack init "$pulumi_stack" --non-interactive >>"$log" 2>&1
  stack_up=$pulumi_stack
  up() { pulumi -C "$src" up --yes --skip-preview -s "$stack_up" 2>&1 | tee -a "$log" >"$work/up.out"; }
  changes() {
    awk '/^Resources:/ { on = 1; next } /^Duration/ { on = 0 }
      on && NF { $1 = $1; printf "%s%s", sep, $0; sep = ", " } END { print "" }' "$work/up.out" |
      sed 's/^/    pulumi resources: /'
  }
  set_config() { pulumi -C "$src" config set -s "$stack_up" "$@" >>"$log" 2>&1; }
  set_config polls:platform swarm
  set_config polls:migrations "$migrations"
  set_config polls:registry "$repo"
  set_config polls:registryUsername "$POLLS_REGISTRY_USER"
  set_config --secret polls:registryPassword -- "$POLLS_REGISTRY_PASSWORD"
  set_config polls:httpPort "$port"
  set_config polls:postgresImage "$pg"
  set_config polls:nginxImage polls-local/nginx:1
  set_config polls:appBuildNetwork host
  set_config polls:appBuildArgs "$(pulumi_args)"
  # Compose's side has no backups: compare like with like (make
  # bench-backup measures what backups cost).
  set_config polls:backups false
  set_config polls:tenants "$(tenant_json "$n")"

  clock
  up || die "pulumi up (cold) failed"
  # shellcheck disable=SC2046 # one argument per tenant
  answer "$port" "" $(tenant_list "$n")
  pulumi_s[cold]=$(seconds)
  pulumi_s[cold converged]=${pulumi_s[cold]}
  note "pulumi cold N=$n (up: every tenant 200)" "${pulumi_s[cold]}"
  changes

  set_config polls:appBuildArgs "$(pulumi_args VERSION=2)"
  hammer_start "$port" t01 t02 t03
  clock
  up || die "pulumi up (release) failed"
  # shellcheck disable=SC2046 # one argument per tenant
  answer "$port" 2 $(tenant_list "$n")
  pulumi_s[release]=$(seconds)
  pulumi_s[release completed]=${pulumi_s[release]}
  hammer_stop
  pulumi_failed[release]=$hammered
  local built
  built=$(sed -n 's/.*docker:index:Image app updated (\([0-9.]*s\)).*/\1/p' "$work/up.out" | head -n 1)
  note "pulumi release (up, builds VERSION=2: every tenant v2)" "${pulumi_s[release]}" "failed/sent $hammered; the image build and push took ${built:-?}"
  changes

  note_manifests
  pulumi_down "$stack_up"
  stack_up=""
}

echo "runs (N=$n; until every tenant answers through the router; failed/sent: request loop on t01..t03):"
bench_stack
bench_pulumi

echo "results (seconds; ratio = pulumi / stack; failed = failed/sent requests to t01..t03 during the step):"
printf '  %-34s %9s %9s %7s %15s %15s\n' scenario pulumi stack ratio "pulumi failed" "stack failed"
for s in "cold" "cold converged" "release" "release completed"; do
  case $s in
    cold) label="cold N=$n, every tenant 200" ;;
    "cold converged") label="cold N=$n, all replicas running" ;;
    release) label="release N=$n, every tenant v2" ;;
    *) label="release N=$n, rolling update done" ;;
  esac
  awk -v s="$label" -v p="${pulumi_s[$s]:-}" -v c="${stack_s[$s]:-}" -v pf="${pulumi_failed[${s%% *}]:--}" -v cf="${stack_failed[${s%% *}]:--}" 'BEGIN {
    ps = p == "" ? "-" : sprintf("%.1fs", p); cs = c == "" ? "-" : sprintf("%.1fs", c)
    r = (p == "" || c == "" || c == 0) ? "-" : sprintf("%.2f", p / c)
    printf "  %-34s %9s %9s %7s %15s %15s\n", s, ps, cs, r, pf, cf
  }'
done
echo "  (pulumi up returns once every replica runs its new spec, so its two rows per scenario are one figure)"
echo "  load average $(cut -d' ' -f1-3 /proc/loadavg) at the end ($(nproc) cores)"
