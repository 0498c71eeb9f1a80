#!/usr/bin/env bash
# Checks what upgrading a stack made by an earlier version of the program
# costs: brings up two tenants with the program at OLD (a git revision),
# shows `pulumi preview --diff` of the working tree's program over it, then
# runs `pulumi up` under a request loop to both tenants and prints how many
# requests failed. Everything is torn down at the end.
#
#   scripts/upgrade-check.sh f463af8
#
# Needs what the end-to-end test needs: a Docker engine, the local images
# (scripts/images.sh), the pulumi CLI with pulumi-language-go and the docker
# and random plugins, go and python3. Traffic goes to 127.0.0.1 only.
set -euo pipefail
old_rev=${1:?usage: scripts/upgrade-check.sh OLD_REVISION}
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d /tmp/upgrade-check.XXXXXX)
export PULUMI_BACKEND_URL=file://$work/state PULUMI_CONFIG_PASSPHRASE=upgrade-check
export PULUMI_SKIP_UPDATE_CHECK=1 PULUMI_PARALLEL=${PULUMI_PARALLEL:-64} GOGC=${GOGC:-400}
status=0
stack=upg$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/state"
git worktree add -f "$work/old" "$old_rev" >/dev/null 2>&1
mkdir -p "$work/new"
tar -C "$root" --exclude=./.git --exclude=./.pulumi-state --exclude=./.pulumi-bin --exclude='./Pulumi.*.yaml' -cf - . | tar -C "$work/new" -xf -
(cd app && go mod download)
[ ! -d agent ] || (cd agent && go mod download)
go build -o "$work/modproxy" ./tools/modproxy
"$work/modproxy" -addr 127.0.0.1:0 >"$work/proxy.out" 2>/dev/null &
proxy=$!
cleanup() {
  set +e
  [ -z "${loop:-}" ] || kill "$loop" 2>/dev/null
  pulumi -C "$work/new" destroy --yes -s "$stack" >>"$work/log" 2>&1 || pulumi -C "$work/old" destroy --yes -s "$stack" >>"$work/log" 2>&1
  for t in thor potter; do docker volume rm "polls-$stack-$t-pgdata" >/dev/null 2>&1; done
  docker image rm "polls-$stack-app:latest" >/dev/null 2>&1
  kill "$proxy" 2>/dev/null
  git -C "$root" worktree remove --force "$work/old" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 50); do
  goproxy=$(sed -n 's/^listening on //p' "$work/proxy.out")
  [ -n "$goproxy" ] && break
  sleep 0.1
done

pulumi -C "$work/old" stack init "$stack" >/dev/null
set_config() {
  pulumi -C "$work/old" config set -s "$stack" "$@" >/dev/null
}
set_config polls:httpPort "$port"
set_config polls:postgresImage polls-local/postgres:15
set_config polls:nginxImage polls-local/nginx:1
set_config polls:appBuildNetwork host
set_config polls:appBuildArgs "{\"GO_IMAGE\":\"polls-local/golang:1.26\",\"RUNTIME_IMAGE\":\"polls-local/static:bookworm\",\"GOPROXY\":\"$goproxy\",\"GOSUMDB\":\"off\"}"
set_config polls:tenants '["thor","potter"]'
# A program that can back tenants up does so in both runs, so that the
# upgrade shows what it does to the databases' and agents' own images.
if grep -q '"backupRepository"' "$work/old/spec/parse.go"; then
  set_config polls:backupRepository "$work/repo"
fi
echo "== pulumi up with $old_rev"
pulumi -C "$work/old" up --yes --skip-preview -s "$stack" >"$work/old-up.log" 2>&1 || { tail -30 "$work/old-up.log"; exit 1; }
sed -n '/^Resources:/,/^Duration/p' "$work/old-up.log"
cp "$work/old/Pulumi.$stack.yaml" "$work/new/"
# Data and secrets before the upgrade: a row in thor's database, and a
# digest (never the values) of the random passwords in the state and of
# the passwords the containers are given (each database's password file
# and each admin password file, as the state records the uploads).
psql_thor() {
  docker exec -i "polls-$stack-thor-db" sh -c 'psql -qAtX -v ON_ERROR_STOP=1 -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"' <<<"$1"
}
marker="upgrade-$stack"
psql_thor "CREATE TABLE upgrade_check (note text); INSERT INTO upgrade_check VALUES ('$marker');" >/dev/null
secrets_digest() {
  pulumi -C "$1" stack export -s "$stack" --show-secrets 2>/dev/null |
    python3 -c 'import hashlib, json, sys
SECRET = "4dabf18193072939515e22adb298388d"
def plain(v):
    # --show-secrets leaves each secret as an envelope around its JSON.
    if isinstance(v, dict) and SECRET in v:
        return plain(json.loads(v["plaintext"]))
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v
def digest(v):
    return hashlib.sha256(str(v).encode()).hexdigest()[:16]
d = json.load(sys.stdin)["deployment"]
for r in d.get("resources", []):
    if r["type"] == "random:index/randomPassword:RandomPassword":
        print(r["urn"], digest(plain(r.get("outputs", {}).get("result", ""))))
    if r["type"] == "docker:index/container:Container":
        for u in plain(r.get("inputs", {}).get("uploads")) or []:
            if u.get("file") in ("/run/secrets/postgres-password", "/run/secrets/admin-password"):
                print(r["urn"].rsplit("::", 1)[1] + ":" + u["file"], digest(u.get("content", "")))' | sort -u
}
before=$(secrets_digest "$work/old")
# The working tree's program backs tenants up: into the run's directory.
if grep -q '"backupRepository"' "$work/new/spec/parse.go"; then
  pulumi -C "$work/new" config set -s "$stack" polls:backupRepository "$work/repo" >/dev/null
fi

echo "== pulumi preview --diff with the working tree"
pulumi -C "$work/new" preview --diff -s "$stack" >"$work/preview.log" 2>&1 || { tail -30 "$work/preview.log"; exit 1; }
grep -E '^ *(\+-|\+\+|--|~|\+|-) *(docker|random|polls):' "$work/preview.log" | sed -E 's/^ +//' || true
sed -n '/^Resources:/,$p' "$work/preview.log"

echo "== pulumi up with the working tree, under a request loop to both tenants"
python3 - "$port" "$work/stop" >"$work/loop.log" 2>&1 <<'PY' &
import http.client, os, sys, time
port, stop = int(sys.argv[1]), sys.argv[2]
sent = failed = 0
end = time.time() + 900
while time.time() < end and not os.path.exists(stop):
    for tenant in ("thor", "potter"):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/", headers={"Host": tenant + ".polls.local"})
            r = c.getresponse()
            r.read()
            ok = r.status == 200
        except OSError:
            ok = False
        sent += 1
        if not ok:
            failed += 1
            print(time.strftime("%H:%M:%S"), tenant, "failed", flush=True)
    time.sleep(0.05)
print("sent", sent, "failed", failed, flush=True)
PY
loop=$!
pulumi -C "$work/new" up --yes --skip-preview -s "$stack" >"$work/new-up.log" 2>&1 || { tail -30 "$work/new-up.log"; exit 1; }
touch "$work/stop"
wait "$loop"
loop=""
sed -n '/^Resources:/,/^Duration/p' "$work/new-up.log"
echo "== data and passwords after the upgrade"
after=$(secrets_digest "$work/new")
if [ "$(psql_thor "SELECT note FROM upgrade_check")" = "$marker" ]; then
  echo "  thor's row written before the upgrade: kept"
else
  echo "  thor's row written before the upgrade: LOST"; status=1
fi
# Every password of the earlier program is unchanged, and so is every
# password file a container is given; the new program may add its own
# (the backups' key when none is configured, the tenant key).
changed=$(join <(echo "$before") <(echo "$after") | awk '$2 != $3' | wc -l)
gone=$(join -v1 <(echo "$before") <(echo "$after") | wc -l)
added=$(join -v2 <(echo "$before") <(echo "$after") | wc -l)
if [ "$changed" = 0 ] && [ "$gone" = 0 ]; then
  echo "  random passwords and password files: $(echo "$before" | wc -l) unchanged (digests compared, never the values), $added added"
else
  echo "  random passwords and password files: $changed changed, $gone gone"; status=1
fi
echo "== requests during the upgrade"
grep ' failed$' "$work/loop.log" | awk '{print $1}' | uniq -c | awk '{print "  " $1 " failed at " $2}' || true
tail -n 1 "$work/loop.log"
exit "$status"
