#!/usr/bin/env bash
# Recovers a stack after an interrupted `pulumi up` (Ctrl-C twice, a killed
# CI job, a lost machine), with or without PULUMI_SKIP_CHECKPOINTS:
#
#   scripts/recover.sh STACK            # refresh, clean up, update again
#   scripts/recover.sh STACK --cancel   # first drop the dead update's lock
#
# 1. With --cancel, `pulumi cancel` removes the lock the killed update left
#    (the file backend refuses every command until then). Give it only when
#    no update of the stack runs anywhere.
# 2. `pulumi refresh --clear-pending-creates` reads back the containers the
#    state holds (those the update removed leave it) and drops the creates
#    it had begun (step 3 removes what they made). Only containers: a
#    refreshed Swarm service would be replaced, delete-first, by step 4
#    (package recovery, RefreshTargets).
# 3. tools/recover removes what the update made that the state does not
#    hold, except a tenant's running app, which its route may point at
#    (package recovery says why).
# 4. scripts/up.sh runs the update again: every tenant's route ends on a
#    container the state holds.
# 5. tools/recover removes the rest: those apps, each stopped with its
#    10 s to drain requests in flight, and Swarm secrets no service uses
#    any more.
#
# Environment as scripts/up.sh's (PULUMI_BACKEND_URL,
# PULUMI_CONFIG_PASSPHRASE, …), which it runs for step 4. Every tenant keeps
# serving throughout (TestEndToEnd and TestSwarm kill a release and
# recover it under a request loop); a tenant being added serves only once
# step 4 has made it again.
set -euo pipefail
cd "$(dirname "$0")/.."
stack=${1:?usage: scripts/recover.sh STACK [--cancel]}
cancel=${2:-}
[ -z "$cancel" ] || [ "$cancel" = --cancel ] || { echo "usage: scripts/recover.sh STACK [--cancel]" >&2; exit 2; }

# shellcheck source=scripts/pulumi-env.sh
. scripts/pulumi-env.sh

project=$(awk '$1 == "name:" { print $2; exit }' Pulumi.yaml)
prefix=$project-${stack##*/}
host=$(pulumi config get polls:dockerHost --stack "$stack" 2>/dev/null || true)
swarm=""
[ "$(pulumi config get polls:platform --stack "$stack" 2>/dev/null || true)" != swarm ] || swarm=-swarm
state=$(mktemp)
tool=$(mktemp)
trap 'rm -f "$state" "$tool"' EXIT
go build -o "$tool" ./tools/recover

if [ -n "$cancel" ]; then
  echo "== pulumi cancel (the lock of the interrupted update)"
  pulumi cancel --yes --stack "$stack"
fi
echo "== pulumi refresh of the state's containers"
pulumi stack export --stack "$stack" --file "$state"
mapfile -t targets < <("$tool" -state "$state" -refresh-targets)
[ "${#targets[@]}" -gt 0 ] || { echo "the state of $stack holds no container: nothing to recover (run scripts/up.sh $stack)" >&2; exit 1; }
pulumi refresh --yes --skip-preview --clear-pending-creates "${targets[@]/#/--target=}" --stack "$stack"
echo "== remove what the state does not hold and nothing serves"
pulumi stack export --stack "$stack" --file "$state"
"$tool" -prefix "$prefix" -state "$state" -phase before -host "$host" $swarm
echo "== the update, again"
scripts/up.sh "$stack"
echo "== remove the rest of what the state does not hold"
pulumi stack export --stack "$stack" --file "$state"
"$tool" -prefix "$prefix" -state "$state" -phase after -host "$host" $swarm
