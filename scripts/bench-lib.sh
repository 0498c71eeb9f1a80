# Helpers shared by the benchmark scripts (bench-compose.sh, bench-swarm.sh),
# sourced once $work (a scratch directory), $log and die are set.
# shellcheck shell=bash disable=SC2154,SC2034 # $work, $log, $src set and $hammered, $proxy, $goproxy read by the caller

start=0
clock() { start=$EPOCHREALTIME; }
seconds() { awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# Where the CPU goes during a step, for hosts whose cores stay busy through
# it (2 cores, cold up): cpu_mark before, cpu_of around the orchestrator's
# command (its whole process tree, as the subshell's reaped children), and
# cpu_report after prints the busy CPU-seconds of the host split into the
# orchestrator, dockerd and containerd, the containers (Docker's cgroup, v1
# cpuacct or v2 cgroupfs layout; "n/a" elsewhere) and the rest (the kernel's
# own threads, runc, the containerd shims, the benchmark itself).
hz=$(getconf CLK_TCK)
# cpu_ticks prints the host's busy and total CPU ticks since boot (busy:
# user, nice, system, irq, softirq and steal; total adds idle and iowait).
cpu_ticks() { awk '$1 == "cpu" { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat; }
# busy_pct prints the share of the host's CPU that is busy over the next
# 5 s, in percent, as cpu_report counts busy.
busy_pct() {
  local a b
  a=$(cpu_ticks)
  sleep 5
  b=$(cpu_ticks)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; print (t > 0 ? int(100 * (y[1] - x[1]) / t) : 0) }'
}
cpu_now() {
  local busy engine=0 pid containers=""
  busy=$(cpu_ticks | cut -d' ' -f1)
  for pid in $(pidof dockerd containerd); do
    engine=$((engine + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")))
  done
  if [ -r /sys/fs/cgroup/cpuacct/docker/cpuacct.usage ]; then
    containers=$(($(cat /sys/fs/cgroup/cpuacct/docker/cpuacct.usage) / (1000000000 / hz)))
  elif [ -r /sys/fs/cgroup/docker/cpu.stat ]; then
    containers=$(awk -v hz="$hz" '$1 == "usage_usec" { printf "%d", $2 * hz / 1000000 }' /sys/fs/cgroup/docker/cpu.stat)
  fi
  echo "$busy $engine ${containers:-x}"
}
cpu_mark() { cpu0=$(cpu_now); cpu_orch=0; }
cpu_of() {
  (
    "$@"
    rc=$?
    # Not in a pipe: `times` must run in this subshell, whose children
    # the command's processes are.
    times >"$work/cpu_of"
    exit $rc
  )
  local rc=$?
  cpu_orch=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, t, "m"); s += t[1] * 60 + t[2] } printf "%.2f", s }' "$work/cpu_of")
  return $rc
}
# It also sets cpu_split to the four parts, unrounded ("orchestrator
# dockerd+containerd containers rest", the containers "n/a" where unknown).
cpu_report() {
  local out
  out=$(awk -v hz="$hz" -v orch="$cpu_orch" -v wall="$1" -v cores="$(nproc)" -v a="$cpu0" -v b="$(cpu_now)" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    busy = (y[1] - x[1]) / hz; engine = (y[2] - x[2]) / hz
    if (x[3] == "x" || y[3] == "x") { ctr = "n/a"; raw = "n/a"; rest = busy - orch - engine } else { c = (y[3] - x[3]) / hz; ctr = sprintf("%.1f", c); raw = c; rest = busy - orch - engine - c }
    printf "    CPU-s: %.1f busy (%d%% of %d cores for %ss): orchestrator %.1f, dockerd+containerd %.1f, containers %s, kernel and the rest %.1f\n", busy, 100 * busy / (cores * wall), cores, wall, orch, engine, ctr, rest
    print orch, engine, raw, rest
  }')
  echo "${out%%$'\n'*}"
  cpu_split=${out##*$'\n'}
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1])'
}

tenant_list() { for ((i = 1; i <= $1; i++)); do printf 't%02d ' "$i"; done; }
tenant_json() { tenant_list "$1" | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().split()))'; }

# median prints the median of the numbers on stdin, one per line (of an
# even count, the mean of the middle two), with one decimal.
median() { sort -n | awk '{ v[NR] = $1 } END { m = (NR + 1) / 2; printf "%.1f", (v[int(m)] + v[int(m + 0.5)]) / 2 }'; }

# answer waits until each named tenant answers 200 through the router on
# 127.0.0.1:port, with header X-Polls-Version: version unless version is "".
answer() {
  local port=$1 version=$2 t got
  shift 2
  local left=("$@") next limit=$((600 + 20 * $#))
  local deadline=$((SECONDS + limit))
  while :; do
    next=()
    for t in "${left[@]}"; do
      got=$(curl -s -o /dev/null -D - -m 5 -H "Host: $t.polls.local" "http://127.0.0.1:$port/" 2>/dev/null | tr -d '\r' |
        awk 'NR == 1 { code = $2 } tolower($1) == "x-polls-version:" { v = $2 } END { print code " " v }' || true)
      if [ -n "$version" ]; then
        [ "$got" = "200 $version" ] || next+=("$t")
      else
        [ "${got%% *}" = 200 ] || next+=("$t")
      fi
    done
    ((${#next[@]})) || return 0
    left=("${next[@]}")
    ((SECONDS < deadline)) || die "tenants ${left[*]} did not answer 200${version:+ with X-Polls-Version: $version} on port $port within ${limit}s"
    sleep 0.2
  done
}

# serve_watch polls the tenant named $2 through the router on
# 127.0.0.1:$1 every 0.2 s, in the background, from the step's clock until
# it first answers 200 (at most 15 min); served_at waits for it and prints
# the seconds from the clock to that answer ("-" if none). An add is timed
# so, until the new tenant serves, whether or not its command is done.
serve_watch() {
  rm -f "$work/served"
  (
    deadline=$((SECONDS + 900))
    while ((SECONDS < deadline)); do
      if [ "$(curl -s -o /dev/null -w '%{http_code}' -m 5 -H "Host: $2.polls.local" "http://127.0.0.1:$1/" 2>/dev/null)" = 200 ]; then
        seconds >"$work/served"
        exit 0
      fi
      sleep 0.2
    done
  ) &
  serve_watcher=$!
}
served_at() {
  # Polled, not waited for: served_at runs in a command substitution, a
  # subshell, whose `wait` cannot wait for the watcher (not its child) and
  # returned at once; a tenant that answered while the watcher slept
  # printed "-" (compose's adds in the run at cc7feb5).
  while [ ! -s "$work/served" ] && kill -0 "$serve_watcher" 2>/dev/null; do
    sleep 0.05
  done
  cat "$work/served" 2>/dev/null || echo -
}

# The request loop: one thread per tenant, a GET every 50 ms, until SIGTERM
# (or an hour); it writes "sent failed" and then the failures to $2.
cat >"$work/hammer.py" <<'PY'
import http.client, signal, sys, threading, time

port, out, tenants = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
lock = threading.Lock()
sent, failures = 0, []
deadline = time.monotonic() + 3600


def loop(tenant):
    global sent
    while not stop.is_set() and time.monotonic() < deadline:
        err = None
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/", headers={"Host": tenant + ".polls.local"})
            r = c.getresponse()
            r.read()
            c.close()
            if r.status != 200:
                err = "status %d" % r.status
        except Exception as e:
            err = "%s: %s" % (type(e).__name__, e)
        with lock:
            sent += 1
            if err:
                failures.append("%s %s: %s" % (time.strftime("%H:%M:%S"), tenant, err))
        stop.wait(0.05)


threads = [threading.Thread(target=loop, args=(t,)) for t in tenants]
for t in threads:
    t.start()
while not stop.is_set() and time.monotonic() < deadline:
    stop.wait(1)
stop.set()
for t in threads:
    t.join()
with open(out, "w") as f:
    f.write("%d %d\n" % (sent, len(failures)))
    f.writelines(line + "\n" for line in failures)
PY

# hammer_start starts the request loop against the named tenants.
hammer_start() {
  local port=$1
  shift
  rm -f "$work/hammer.out"
  python3 "$work/hammer.py" "$port" "$work/hammer.out" "$@" &
  hammer=$!
  sleep 0.3
}

# hammer_stop stops it and sets hammered to "failed/sent"; the failures go
# to the log. (Not in a command substitution: the loop is this shell's child.)
hammered=""
hammer_stop() {
  local h_sent h_failed
  kill -TERM "$hammer"
  wait "$hammer" || true
  hammer=""
  read -r h_sent h_failed <"$work/hammer.out"
  {
    echo "request loop: $h_sent sent, $h_failed failed"
    # Not `tail | head`: under pipefail, head closing the pipe early fails
    # the step (SIGPIPE, status 141), as it did after compose's release
    # at N=100 with 839 failures.
    sed -n '2,201p' "$work/hammer.out"
  } >>"$log"
  hammered="$h_failed/$h_sent"
}

# start_module_proxy serves the Go module cache on loopback for the app
# build (containers here cannot do HTTPS), with $work/bin/modproxy; it sets
# proxy (its pid, for cleanup), goproxy and build_args.
start_module_proxy() {
  "$work/bin/modproxy" -addr 127.0.0.1:0 >"$work/proxy.out" 2>>"$log" &
  proxy=$!
  for _ in $(seq 50); do
    goproxy=$(sed -n 's/^listening on //p' "$work/proxy.out")
    [ -n "$goproxy" ] && break
    sleep 0.1
  done
  [ -n "$goproxy" ] || die "the module proxy did not start"
  build_args=(GO_IMAGE=polls-local/golang:1.26 RUNTIME_IMAGE=polls-local/static:bookworm GOPROXY="$goproxy" GOSUMDB=off)
}

# build_app builds app/ ($src/app) as tag $1 with the build args and any
# more given.
build_app() {
  local tag=$1
  shift
  DOCKER_BUILDKIT=0 docker build --network host -t "$tag" \
    "${build_args[@]/#/--build-arg=}" "${@/#/--build-arg=}" "$src/app" >>"$log" 2>&1 || die "docker build of app/ as $tag failed"
}

# pulumi_args prints polls:appBuildArgs: the build args and any more given.
pulumi_args() {
  printf '%s\n' "${build_args[@]}" "$@" | python3 -c '
import json, sys
print(json.dumps(dict(l.rstrip("\n").split("=", 1) for l in sys.stdin)))'
}

# remove_build_stages removes the untagged images of app builds this run
# made (the classic builder keeps each build stage), only those whose last
# step matches $1 when given, and first the stopped containers of their RUN
# steps that the Pulumi provider's build leaves behind (they pin the
# images). The tagged images are removed by name. The caller defines
# ours IMAGE (built by this run) and build_container CONTAINER (a step of
# one of this run's builds).
remove_build_stages() {
  local also=${1:-} img c step removed
  [ -n "$goproxy" ] || return 0
  for c in $(docker ps -aq --filter status=exited --filter status=created); do
    build_container "$c" || continue
    if [ -n "$also" ]; then
      step=$(docker inspect -f '{{json .Config.Env}}' "$c" 2>/dev/null)
      [[ $step == *"$also"* ]] || continue
    fi
    docker rm "$c" >>"$log" 2>&1 || true
  done
  # Removing an image also removes its untagged parents that have no other
  # child; a parent with two (say VERSION=dev and VERSION=2) goes on the
  # next pass.
  for _ in 1 2 3; do
    removed=""
    for img in $(docker images -q --filter dangling=true); do
      if [ -n "$also" ]; then
        step=$(docker history --no-trunc --format '{{.CreatedBy}}' "$img" 2>/dev/null | sed -n 1p)
        [[ $step == *"GOPROXY=$goproxy "* && $step == *"$also"* ]] || continue
      else
        ours "$img" || continue
      fi
      docker image rm "$img" >>"$log" 2>&1 && removed=1
    done
    if [ -z "$removed" ] || [ -n "$also" ]; then break; fi
  done
  return 0
}
