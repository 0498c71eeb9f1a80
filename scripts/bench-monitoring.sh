#!/usr/bin/env bash
# Measures what polls:monitoring costs, in one run, against monitoring off
# in the same run, and prints the ratios (make bench-monitoring):
#
#   router latency   BenchmarkMetricsOverhead (nginx/): two real nginx in
#                    front of the same upstreams, rendered without and with
#                    the per-request metrics lines, the second sending them
#                    to the real exporter; requests alternate between the
#                    two; the median of each, for the real app's poll list
#                    and for a fixed 2 KiB page
#   idle RAM         one stack (a file backend in a temp dir, the local
#                    images, backups on, as by default), brought to N1
#                    tenants with monitoring off, then on, then to N2
#                    tenants with monitoring on, then off; after each
#                    `pulumi up`, the memory `docker stats` reports for the
#                    stack's running containers once it has been idle for
#                    BENCH_IDLE seconds (default 90: Prometheus has scraped
#                    every target a few times). Per tenant is the slope
#                    (N2 - N1 tenants); monitoring's extra per tenant is the
#                    slope with it on less the slope with it off, and its
#                    fixed cost (the exporter, Prometheus, Alertmanager) what
#                    remains of the difference at N1.
#
#   scripts/bench-monitoring.sh                  # N1=2, N2=6
#   BENCH_N1=2 BENCH_N2=10 scripts/bench-monitoring.sh
#   BENCH_LOG=/tmp/bench.log scripts/bench-monitoring.sh   # keep the full log
#
# Needs: a Docker engine, go, python3, the local images (scripts/images.sh),
# nginx and PostgreSQL (Debian's nginx-light and postgresql, for the latency
# half), the Pulumi CLI, pulumi-language-go and the docker 4.10.0 and random
# 4.19.0 plugins. Runs on a copy of the working tree; removes the stack, its
# volumes and images, the module proxy and the temp dir on exit.
set -euo pipefail
export LC_ALL=C PULUMI_SKIP_UPDATE_CHECK=1
export PULUMI_PARALLEL=${PULUMI_PARALLEL:-64} GOGC=${GOGC:-400}
cd "$(dirname "$0")/.."
root=$PWD
n1=${BENCH_N1:-2}
n2=${BENCH_N2:-6}
idle=${BENCH_IDLE:-90}
images=(polls-local/postgres:15 polls-local/nginx:1 polls-local/golang:1.26 polls-local/static:bookworm polls-local/prometheus:2.42 polls-local/alertmanager:0.25)

die() {
  echo "bench-monitoring: $*" >&2
  exit 1
}

missing=()
for tool in go python3 pulumi pulumi-language-go; do
  command -v "$tool" >/dev/null || missing+=("$tool on PATH")
done
if ! docker info >/dev/null 2>&1; then
  missing+=("a running Docker engine (docker info fails)")
else
  for img in "${images[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 || missing+=("image $img (run scripts/images.sh)")
  done
fi
((n2 > n1 && n1 >= 1)) || missing+=("BENCH_N2 ($n2) greater than BENCH_N1 ($n1) >= 1")
if ((${#missing[@]})); then
  printf -v list '\n  - %s' "${missing[@]}"
  die "cannot run, missing:$list"
fi

work=$(mktemp -d /tmp/bench-monitoring.XXXXXX)
log=$work/bench.log
src=$work/src
id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
stack=benchmon-$id
prefix=polls-$stack
export PULUMI_BACKEND_URL=file://$work/state
PULUMI_CONFIG_PASSPHRASE=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
export PULUMI_CONFIG_PASSPHRASE
proxy="" goproxy="" stack_up=""

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
  if [ "$status" -ne 0 ] && [ -f "$log" ]; then
    echo "bench-monitoring: failed; last lines of the log:" >&2
    tail -n 30 "$log" >&2
  fi
  if [ -n "$stack_up" ]; then
    pulumi -C "$src" destroy --yes --skip-preview -s "$stack" >>"$log" 2>&1
    pulumi -C "$src" stack rm --yes --force -s "$stack" >>"$log" 2>&1
    docker ps -aq --filter "label=polls.stack=$prefix" | xargs -r docker rm -f >>"$log" 2>&1
    docker network ls -q --filter "name=$prefix-" | xargs -r docker network rm >>"$log" 2>&1
    docker volume ls -q | grep "^$prefix-" | xargs -r docker volume rm >>"$log" 2>&1
    docker image rm "$prefix-app:latest" "$prefix-agent:latest" "$prefix-db:latest" >>"$log" 2>&1
  fi
  remove_build_stages
  [ -n "$proxy" ] && kill "$proxy" 2>/dev/null && wait "$proxy" 2>/dev/null
  [ -z "${BENCH_LOG:-}" ] || cp "$log" "$BENCH_LOG"
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"

echo "bench-monitoring: what polls:monitoring costs, against monitoring off in the same run"
echo "  host: $(nproc) cores, $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
mkdir -p "$src" "$work/bin"
tar -C "$root" --exclude=./.git --exclude=./.pulumi-state --exclude=./.pulumi-bin --exclude='./Pulumi.*.yaml' -cf - . | tar -C "$src" -xf -
echo "  source: working tree at $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"

# --- router latency ---------------------------------------------------------
echo "router latency (BenchmarkMetricsOverhead):"
(cd "$src" && go test -run '^$' -bench BenchmarkMetricsOverhead -benchtime 1x ./nginx) >"$work/latency.out" 2>&1 || {
  cat "$work/latency.out" >>"$log"
  die "BenchmarkMetricsOverhead failed (see the log)"
}
cat "$work/latency.out" >>"$log"
grep -E '^(router latency|the exporter)' "$work/latency.out" | sed 's/^/  /'
lat_app=$(awk -F'ratio on/off: median ' '/upstream thor/ { split($2, a, ","); print a[1] }' "$work/latency.out")
lat_static=$(awk -F'ratio on/off: median ' '/upstream static/ { split($2, a, ","); print a[1] }' "$work/latency.out")

# --- idle RAM -----------------------------------------------------------------
(cd "$src/app" && go mod download) >>"$log" 2>&1
(cd "$src/agent" && go mod download) >>"$log" 2>&1
(cd "$src" && go build -o "$work/bin/modproxy" ./tools/modproxy) >>"$log" 2>&1
start_module_proxy
port=$(free_port)
mport=$(free_port)
pulumi -C "$src" stack init "$stack" --non-interactive >>"$log" 2>&1
stack_up=$stack
set_config() { pulumi -C "$src" config set -s "$stack" "$@" >>"$log" 2>&1; }
set_config polls:httpPort "$port"
set_config polls:postgresImage polls-local/postgres:15
set_config polls:nginxImage polls-local/nginx:1
set_config polls:prometheusImage polls-local/prometheus:2.42
set_config polls:alertmanagerImage polls-local/alertmanager:0.25
set_config polls:appBuildNetwork host
set_config polls:appBuildArgs "$(pulumi_args)"
set_config polls:backupRepository "$work/backups"

# ram brings the stack to $1 tenants with polls:monitoring $2, waits until
# it has been idle for $idle seconds and sets ram_mib to the MiB its running
# containers use and ram_count to how many there are.
ram_mib="" ram_count=""
ram() {
  local n=$1 mon=$2 ids
  set_config polls:tenants "$(tenant_json "$n")"
  set_config polls:monitoring "$mon"
  if [ "$mon" = true ]; then set_config polls:monitoringPort "$mport"; else pulumi -C "$src" config rm -s "$stack" polls:monitoringPort >>"$log" 2>&1 || true; fi
  pulumi -C "$src" up --yes --skip-preview -s "$stack" >>"$log" 2>&1 || die "pulumi up ($n tenants, monitoring $mon) failed"
  # shellcheck disable=SC2046 # one argument per tenant
  answer "$port" "" $(tenant_list "$n")
  sleep "$idle"
  ids=$(docker ps -q --filter "label=polls.stack=$prefix")
  # shellcheck disable=SC2086 # one argument per container
  read -r ram_mib ram_count < <(docker stats --no-stream --format '{{.MemUsage}}' $ids | awk '{
      v = $1; unit = v; sub(/^[0-9.]+/, "", unit); sub(/[A-Za-z]+$/, "", v)
      f = unit == "GiB" ? 1024 : unit == "MiB" ? 1 : unit == "KiB" ? 1 / 1024 : unit == "kB" ? 1 / 1000 / 1.048576 : unit == "MB" ? 1 / 1.048576 : unit == "GB" ? 1000 / 1.048576 : 1 / 1048576
      sum += v * f; count++
    } END { printf "%.1f %d\n", sum, count }')
}
echo "idle RAM (the stack's running containers, $idle s after each up):"
declare -A mib
for step in "$n1 false" "$n1 true" "$n2 true" "$n2 false"; do
  read -r n mon <<<"$step"
  ram "$n" "$mon"
  mib["$n $mon"]=$ram_mib
  printf '  %2d tenants, monitoring %-5s %8s MiB  (%d containers)\n' "$n" "$mon" "$ram_mib" "$ram_count"
done
read -r off_per on_per extra fixed ratio < <(awk -v a="${mib["$n1 false"]}" -v b="${mib["$n1 true"]}" -v c="${mib["$n2 true"]}" -v d="${mib["$n2 false"]}" -v n1="$n1" -v n2="$n2" 'BEGIN {
  off = (d - a) / (n2 - n1); on = (c - b) / (n2 - n1); extra = on - off
  printf "%.1f %.1f %.1f %.1f %.2f\n", off, on, extra, (b - a) - n1 * extra, on / off }')

echo "results (ratio = monitoring on / off, measured in this run):"
printf '  %-40s %s\n' "router median latency, real app" "ratio $lat_app"
printf '  %-40s %s\n' "router median latency, fixed 2 KiB page" "ratio $lat_static"
printf '  %-40s %s MiB off, %s MiB on: ratio %s; %s MiB extra per tenant\n' "idle RAM per tenant ($n1 to $n2 tenants)" "$off_per" "$on_per" "$ratio" "$extra"
printf '  %-40s %s MiB (exporter, Prometheus, Alertmanager)\n' "idle RAM of monitoring itself" "$fixed"
