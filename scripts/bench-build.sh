#!/usr/bin/env bash
# Release build time of the app image with BuildKit against the legacy
# builder, as `pulumi up` does it, in one invocation.
#
#   scripts/bench-build.sh [ROUNDS]     # default 3
#
# Two throwaway stacks with no tenants (so a release changes the image
# only), one per polls:appBuilder, on a local file backend, local images
# and a module proxy on loopback. Each stack is brought up once (a cold
# build, which fills that builder's cache), then ROUNDS times, alternating
# the builders, a release (a new VERSION build arg: the dependency layer
# is reused, the app is compiled again) and a no-op `pulumi up`, whose time
# is what the update costs without a build. Prints each time, the release
# build time (release minus no-op, means) and the ratio legacy / BuildKit;
# the pulumi output goes to BENCH_LOG (default: a temporary file).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
work=$(mktemp -d)
log=${BENCH_LOG:-$work/bench.log}
die() { echo "bench-build: $*" >&2; exit 1; }
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

export PULUMI_BACKEND_URL=file://$work/state
export PULUMI_CONFIG_PASSPHRASE=bench-build
export PULUMI_SKIP_UPDATE_CHECK=1
export PULUMI_PARALLEL=64 GOGC=${GOGC:-400}
command -v pulumi >/dev/null || die "pulumi CLI not found on PATH"
docker image inspect polls-local/golang:1.23 polls-local/static:bookworm polls-local/nginx:1 >/dev/null 2>&1 ||
  die "local images missing: run scripts/images.sh"
mkdir -p "$work/state" "$work/bin"
go build -o "$work/bin/modproxy" ./tools/modproxy
(cd app && go mod download)
proxy=""
start_module_proxy

id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
builders=(buildkit legacy)
cleanup() {
  local b
  for b in "${builders[@]}"; do
    pulumi destroy --yes --stack "bb$id$b" >>"$log" 2>&1 || true
    pulumi stack rm --yes --force --stack "bb$id$b" >>"$log" 2>&1 || true
    rm -f "Pulumi.bb$id$b.yaml"
    docker image rm "polls-bb$id$b-app:latest" "polls-bb$id$b-app:build-cache" >>"$log" 2>&1 || true
  done
  [ -n "$proxy" ] && kill "$proxy" 2>/dev/null || true
  [ -n "${BENCH_LOG:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# up STACK VERSION: sets the build's VERSION and times `pulumi up`.
up() {
  pulumi config set --stack "$1" polls:appBuildArgs "$(pulumi_args VERSION="$2")" >/dev/null
  clock
  pulumi up --yes --skip-preview --stack "$1" >>"$log" 2>&1 || die "pulumi up of $1 failed (log: $log)"
  seconds
}

declare -A cold release noop
for b in "${builders[@]}"; do
  s=bb$id$b
  pulumi stack init "$s" >>"$log" 2>&1
  pulumi config set --stack "$s" polls:httpPort "$(free_port)" >/dev/null
  pulumi config set --stack "$s" polls:nginxImage polls-local/nginx:1 >/dev/null
  pulumi config set --stack "$s" polls:appBuildNetwork host >/dev/null
  pulumi config set --stack "$s" polls:appBuilder "$b" >/dev/null
  cold[$b]=$(up "$s" 1)
  echo "$b: cold up ${cold[$b]} s"
done
for ((r = 1; r <= rounds; r++)); do
  for b in "${builders[@]}"; do
    t=$(up "bb$id$b" $((r + 1)))
    n=$(up "bb$id$b" $((r + 1)))
    release[$b]+=" $t"
    noop[$b]+=" $n"
    echo "$b: release $t s, no-op $n s"
  done
done
mean() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.1f", s / NF }' <<<"$1"; }
echo
printf '%-9s %8s %12s %9s %14s\n' builder "cold up" "release up" "no-op up" "release build"
for b in "${builders[@]}"; do
  rb=$(awk -v a="$(mean "${release[$b]}")" -v b="$(mean "${noop[$b]}")" 'BEGIN { printf "%.1f", a - b }')
  eval "build_$b=$rb"
  printf '%-9s %7ss %11ss %8ss %13ss\n' "$b" "${cold[$b]}" "$(mean "${release[$b]}")" "$(mean "${noop[$b]}")" "$rb"
done
# shellcheck disable=SC2154 # set by eval above
awk -v l="$build_legacy" -v k="$build_buildkit" 'BEGIN { if (k > 0) printf "release build, legacy / BuildKit: %.2f\n", l / k }'
