#!/usr/bin/env bash
# What the app's short-lived processes cost in CPU, the working tree's app
# against a baseline revision's, in one invocation, alternating, ROUNDS
# times each:
#
#   scripts/bench-appstart.sh [BASE_REV] [ROUNDS]   # defaults: HEAD, 10
#
# Two processes a tenant runs again and again:
#   migrate     `polls migrate -createsuperuser` on a database already
#               migrated, its admin user already there: every release's
#               migration container (with polls:migrations app, the same
#               work at every start of the app).
#   healthcheck `polls healthcheck` against a serving app: the engine's
#               health check, and the probes `pulumi up` runs while a
#               container starts (every 2 s per task on Swarm).
# Each figure is the process's user+system CPU time (/usr/bin/time), the
# mean over ROUNDS runs; then the ratio tree/base. Both binaries talk to the
# same PostgreSQL (a container of polls-local/postgres:15 on a loopback
# port) and the same app, which serves from the tree's binary.
#
# Needs: go, a Docker engine, the image polls-local/postgres:15
# (scripts/images.sh), /usr/bin/time, curl, python3.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base=${1:-HEAD}
rounds=${2:-10}
die() {
  echo "bench-appstart: $*" >&2
  exit 1
}
missing=()
for tool in go docker curl python3; do
  command -v "$tool" >/dev/null || missing+=("$tool on PATH")
done
[ -x /usr/bin/time ] || missing+=("/usr/bin/time (Debian package time)")
docker image inspect polls-local/postgres:15 >/dev/null 2>&1 || missing+=("image polls-local/postgres:15 (run scripts/images.sh)")
if ((${#missing[@]})); then
  printf -v list '\n  - %s' "${missing[@]}"
  die "cannot run, missing:$list"
fi
base_rev=$(git -C "$root" rev-parse --verify "$base^{commit}")

work=$(mktemp -d /tmp/bench-appstart.XXXXXX)
db=bench-appstart-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
serve=""
cleanup() {
  [ -z "$serve" ] || kill "$serve" 2>/dev/null || true
  docker rm -f "$db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
log=$work/bench.log
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh" # free_port

# The two binaries: the base revision's app/ and the tree's.
mkdir -p "$work/base"
git -C "$root" archive "$base_rev" app | tar -C "$work/base" -xf -
(cd "$work/base/app" && go build -o "$work/polls-base" .)
(cd "$root/app" && go build -o "$work/polls-tree" .)

pg_port=$(free_port)
password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
docker run -d --name "$db" -e POSTGRES_PASSWORD="$password" -p "127.0.0.1:$pg_port:5432" polls-local/postgres:15 >/dev/null
for _ in $(seq 60); do
  docker exec "$db" pg_isready -U postgres -h 127.0.0.1 >/dev/null 2>&1 && break
  sleep 1
done
docker exec "$db" pg_isready -U postgres -h 127.0.0.1 >/dev/null 2>&1 || die "PostgreSQL did not start (docker logs $db)"

printf 'postgres://postgres:%s@127.0.0.1:%s/postgres?sslmode=disable\n' "$password" "$pg_port" >"$work/database-url"
od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$work/admin-password"
app_port=$(free_port)
export TENANT=bench DATABASE_URL_FILE=$work/database-url ADMIN_USER=admin ADMIN_PASSWORD_FILE=$work/admin-password
export LISTEN_ADDR=127.0.0.1:$app_port ALLOWED_HOSTS=bench.polls.local

# The database migrated and the admin there, then the app serving (the
# health check GETs it on LISTEN_ADDR).
"$work/polls-tree" migrate -createsuperuser >"$work/first-migrate.log" 2>&1 || die "the first migrate failed: $(tail -3 "$work/first-migrate.log")"
"$work/polls-tree" serve >"$work/serve.log" 2>&1 &
serve=$!
for _ in $(seq 50); do
  curl -fsS -o /dev/null "http://127.0.0.1:$app_port/readyz" 2>/dev/null && break
  sleep 0.2
done
curl -fsS -o /dev/null "http://127.0.0.1:$app_port/readyz" || die "the app did not serve (log: $(tail -3 "$work/serve.log"))"

# cpu BIN ARGS...: the process's user+system seconds; fails with it.
cpu() {
  local out
  out=$(/usr/bin/time -f '%U %S' "$@" 2>&1 >/dev/null) || die "$* failed: $(tail -3 <<<"$out")"
  tail -1 <<<"$out" | awk '{ printf "%.3f\n", $1 + $2 }'
}

declare -A sum=()
for what in migrate healthcheck; do
  for side in base tree; do sum[$what-$side]=0; done
done
for _ in $(seq "$rounds"); do
  for side in base tree; do
    bin=$work/polls-$side
    sum[migrate-$side]=$(awk -v a="${sum[migrate-$side]}" -v b="$(cpu "$bin" migrate -createsuperuser)" 'BEGIN { print a + b }')
    sum[healthcheck-$side]=$(awk -v a="${sum[healthcheck-$side]}" -v b="$(cpu "$bin" healthcheck)" 'BEGIN { print a + b }')
  done
done

echo "bench-appstart: the app's processes, CPU-seconds each (user+system), mean of $rounds runs"
echo "  base:  $(git -C "$root" rev-parse --short "$base_rev")"
echo "  tree:  working tree at $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- app || echo ', app/ changed')"
printf '  %-32s %8s %8s %7s\n' process base tree ratio
for what in migrate healthcheck; do
  label=$what
  [ "$what" = migrate ] && label="migrate -createsuperuser"
  awk -v w="$label" -v b="${sum[$what-base]}" -v t="${sum[$what-tree]}" -v n="$rounds" \
    'BEGIN { r = "-"; if (b > 0) r = sprintf("%.2f", t / b); printf "  %-32s %8.3f %8.3f %7s\n", w, b / n, t / n, r }'
done
