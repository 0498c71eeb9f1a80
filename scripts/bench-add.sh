#!/usr/bin/env bash
# Adding one tenant to N=10, timed: the working tree against a baseline
# revision, in one invocation, alternating, ROUNDS times each. The cold up
# of the N tenants before it is timed too, then a no-op `pulumi preview`
# (BENCH_PREVIEWS of them, default 1, the median kept), and with backups
# on, how every tenant's first base backup ran (scripts/first-bases.py); a
# cold up or an add that fails is reported, and left out of the means.
#
#   scripts/bench-add.sh [BASE_REV] [ROUNDS]     # defaults: HEAD, 2
#
# Each round makes a throwaway stack (local file backend) of the tree with
# N tenants (BENCH_N, default 10) on the local images, then times `pulumi up
# --skip-preview` after adding one more: until the new tenant first answers
# 200 through the router (polled every 0.2 s from the start, as `make
# bench-compose` times an add) and until `pulumi up` ends. It keeps the
# engine's event log so the new tenant's path can be read off it
# (BENCH_DIR/<side>-<round>.events.json). Prints each time, the means and
# the ratios tree/base. BENCH_MIGRATIONS sets polls:migrations (default
# container), BENCH_BACKUPS polls:backups (default true, the program's
# default; false as `make bench-compose` runs, whose compose side has
# none), BENCH_PULUMI_ENV is set for every pulumi command (e.g.
# PULUMI_SKIP_CHECKPOINTS=true), BENCH_SIDES which sides run (default
# "base tree"; "tree" alone to finish a run whose base side is done, its
# figures are in BENCH_DIR). Needs what the end-to-end test needs: a
# Docker engine, the local images (scripts/images.sh) and the Pulumi
# toolchain.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base=${1:-HEAD}
rounds=${2:-2}
n=${BENCH_N:-10}
migrations=${BENCH_MIGRATIONS:-container}
backups=${BENCH_BACKUPS:-true}
sides=${BENCH_SIDES:-base tree}
previews=${BENCH_PREVIEWS:-1}
read -r -a pulumi_env <<<"${BENCH_PULUMI_ENV:-}"
dir=${BENCH_DIR:-$(mktemp -d /tmp/bench-add.XXXXXX)}
base_rev=$(git -C "$root" rev-parse --verify "$base^{commit}")
mkdir -p "$dir"
export PULUMI_CONFIG_PASSPHRASE=bench PULUMI_SKIP_UPDATE_CHECK=1 PULUMI_PARALLEL=64 GOGC=${GOGC:-400}

# A module proxy on loopback for the app build (containers here cannot do
# HTTPS): the module cache's download tree.
(cd "$root" && go build -o "$dir/modproxy" ./tools/modproxy)
"$dir/modproxy" -addr 127.0.0.1:0 >"$dir/proxy.out" 2>&1 &
proxy=$!
trap 'kill $proxy 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  goproxy=$(sed -n 's/^listening on //p' "$dir/proxy.out")
  [ -n "$goproxy" ] && break
  sleep 0.1
done
[ -n "${goproxy:-}" ] || { echo "bench-add: the module proxy did not start" >&2; exit 1; }

tenants() { python3 -c "import json; print(json.dumps({'t%02d' % i: {} for i in range(1, $1 + 1)}))"; }

# run SIDE ROUND: one stack of the side's source, N tenants, then add one.
run() {
  local side=$1 round=$2 src=$dir/$1-$2 stack=ba$1$2 start end
  mkdir -p "$src" "$dir/state"
  if [ "$side" = base ]; then
    git -C "$root" archive "$base_rev" | tar -C "$src" -xf -
  else
    tar -C "$root" --exclude=./.git --exclude=./.pulumi-bin -cf - . | tar -C "$src" -xf -
  fi
  rm -f "$src"/Pulumi.*.yaml
  export PULUMI_BACKEND_URL=file://$dir/state
  # Exit status 3: the cold up or the add failed, reported; the bench goes
  # on, and leaves what failed out of the means.
  set +e
  (
    set -e
    cd "$src"
    pulumi stack init "$stack" >/dev/null
    pulumi config set polls:httpPort "$((18100 + round))" >/dev/null
    pulumi config set polls:postgresImage polls-local/postgres:15 >/dev/null
    pulumi config set polls:nginxImage polls-local/nginx:1 >/dev/null
    pulumi config set polls:appBuildNetwork host >/dev/null
    pulumi config set polls:appBuildArgs "{\"GO_IMAGE\":\"polls-local/golang:1.26\",\"RUNTIME_IMAGE\":\"polls-local/static:bookworm\",\"GOPROXY\":\"$goproxy\",\"GOSUMDB\":\"off\"}" >/dev/null
    pulumi config set polls:tenants "$(tenants "$n")" >/dev/null
    pulumi config set polls:migrations "$migrations" >/dev/null
    pulumi config set polls:backups "$backups" >/dev/null
    # Backups of the throwaway stack go into the bench's directory.
    [ "$backups" = false ] || pulumi config set polls:backupRepository "$dir/repo-$side-$round" >/dev/null
    start=$EPOCHREALTIME
    # failed WHAT OUT: report the failed step with its errors, tear the
    # stack down, and end the round (exit status 3).
    failed() {
      echo "  $side  round $round: $1 FAILED ($2):"
      grep -A3 'error:' "$2" | tail -8 | sed 's/^/    /'
      env "${pulumi_env[@]}" pulumi destroy --yes >/dev/null 2>&1 || true
      pulumi stack rm --yes --force "$stack" >/dev/null 2>&1 || true
      exit 3
    }
    if ! env "${pulumi_env[@]}" pulumi up --yes --skip-preview >"$dir/$side-$round.cold.out" 2>&1; then
      failed "the cold pulumi up of N=$n, after $(echo "$EPOCHREALTIME - $start" | bc | cut -d. -f1) s," "$dir/$side-$round.cold.out"
    fi
    echo "$EPOCHREALTIME - $start" | bc >"$dir/$side-$round.cold"
    # With backups, the add is timed once every tenant's first base backup
    # is done (they would otherwise run beside it), and how those ran is
    # part of what a cold up costs.
    if [ "$backups" != false ]; then
      python3 "$root/scripts/first-bases.py" "polls-$stack" "$n" "$start" 1200 >"$dir/$side-$round.bases" || true
      sed 's/^/  '"$side"'  round '"$round"': /' "$dir/$side-$round.bases"
    fi
    # No-op previews, once the cold up's work (and its first base backups)
    # is done; the median is kept (of an even count, the mean of the middle
    # two, as bench-lib.sh's median and bench-release.sh take it).
    for p in $(seq "$previews"); do
      pstart=$EPOCHREALTIME
      env "${pulumi_env[@]}" PULUMI_PARALLEL_DIFF=true pulumi preview >"$dir/$side-$round.preview$p.out" 2>&1 || failed "a no-op preview" "$dir/$side-$round.preview$p.out"
      echo "$EPOCHREALTIME - $pstart" | bc
    done | sort -n | awk '{ v[NR] = $1 } END { m = (NR + 1) / 2; print (v[int(m)] + v[int(m + 0.5)]) / 2 }' >"$dir/$side-$round.preview"
    pulumi config set polls:tenants "$(tenants $((n + 1)))" >/dev/null
    start=$EPOCHREALTIME
    added=$(printf 't%02d' $((n + 1)))
    rm -f "$dir/$side-$round.served"
    (
      while [ "$(curl -s -o /dev/null -w '%{http_code}' -m 5 -H "Host: $added.polls.local" "http://127.0.0.1:$((18100 + round))/" 2>/dev/null)" != 200 ]; do
        sleep 0.2
      done
      echo "$EPOCHREALTIME - $start" | bc >"$dir/$side-$round.served"
    ) &
    watcher=$!
    if ! env "${pulumi_env[@]}" PULUMI_DEBUG_COMMANDS=true pulumi up --yes --skip-preview --event-log "$dir/$side-$round.events.json" >"$dir/$side-$round.add.out" 2>&1; then
      kill "$watcher" 2>/dev/null || true
      rm -f "$dir/$side-$round.served"
      failed "adding $added" "$dir/$side-$round.add.out"
    fi
    echo "$EPOCHREALTIME - $start" | bc >"$dir/$side-$round.seconds"
    if ! timeout 120 tail --pid="$watcher" -f /dev/null; then
      kill "$watcher"
      echo "bench-add: $added did not answer 200 within 120 s after pulumi up ended ($dir/$side-$round.add.out)" >&2
      exit 1
    fi
    env "${pulumi_env[@]}" pulumi destroy --yes >/dev/null 2>&1 || true
    pulumi stack rm --yes --force "$stack" >/dev/null 2>&1 || true
  )
  local rc=$?
  set -e
  case $rc in
  0) ;;
  3)
    docker volume ls -q --filter "name=polls-$stack-" | xargs -r docker volume rm >/dev/null
    return 0
    ;;
  *) exit "$rc" ;;
  esac
  docker volume ls -q --filter "name=polls-$stack-" | xargs -r docker volume rm >/dev/null
  printf '  %-5s round %d: cold up of N=%d %6.1fs; no-op preview %6.2fs; add t%02d  until it serves %6.2fs, pulumi up %6.2fs\n' "$side" "$round" "$n" \
    "$(cat "$dir/$side-$round.cold")" "$(cat "$dir/$side-$round.preview")" $((n + 1)) "$(cat "$dir/$side-$round.served")" "$(cat "$dir/$side-$round.seconds")"
}

echo "bench-add: tree ($(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo '+changes')) vs base ${base_rev:0:7}, N=$n, $rounds rounds, PULUMI_PARALLEL=64 GOGC=$GOGC, polls:migrations $migrations, polls:backups $backups${BENCH_PULUMI_ENV:+, $BENCH_PULUMI_ENV}"
for r in $(seq "$rounds"); do
  for side in $sides; do
    run "$side" "$r"
  done
done
# Means over what succeeded (a failed cold up or add leaves no figure); a
# side none of whose rounds did has none.
mean() { cat "$dir"/"$1"-*."$2" 2>/dev/null | awk '{ s += $1 } END { if (NR) printf "%.2f", s / NR }'; }
for what in cold preview served seconds; do
  b=$(mean base $what) t=$(mean tree $what)
  case $what in cold) label="cold up of N=$n" ;; preview) label="no-op preview" ;; served) label="add, until it serves" ;; *) label="add, pulumi up" ;; esac
  if [ -n "$b" ] && [ -n "$t" ]; then
    echo "  mean, $label: base ${b}s, tree ${t}s, ratio tree/base $(echo "scale=2; $t / $b" | bc)"
  else
    echo "  mean, $label: base ${b:-failed}${b:+s}, tree ${t:-failed}${t:+s}"
  fi
done
echo "  event logs and outputs: $dir"
