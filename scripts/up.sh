#!/usr/bin/env bash
# Brings a stack up (or, with --destroy, down) on a local file backend: no
# Pulumi account, state under .pulumi-state/ in the repo (git-ignored).
#
#   scripts/up.sh dev            # pulumi up --stack dev
#   scripts/up.sh local          # registry-less host: local images, module proxy
#   scripts/up.sh dev --destroy  # pulumi destroy; tenant data volumes stay
#
# The backend and PULUMI_CONFIG_PASSPHRASE, which encrypts the stack's
# secrets, come from scripts/pulumi-env.sh: the passphrase defaults to a
# fixed development one only when unset, and must be set for anything that
# is not a throwaway dev stack.
set -euo pipefail
cd "$(dirname "$0")/.."
stack=${1:?usage: scripts/up.sh STACK [--destroy]}
action=${2:-up}

# shellcheck source=scripts/pulumi-env.sh
. scripts/pulumi-env.sh
# Pulumi's default is 4 steps per core. Go's default GOGC=100 made garbage
# collection a quarter of a preview's CPU at 100 tenants; 400 collects less
# often. See README, "Performance".
export PULUMI_PARALLEL=${PULUMI_PARALLEL:-64} GOGC=${GOGC:-400}
mkdir -p .pulumi-state

pulumi stack select --create "$stack" >/dev/null

if [ "$action" = "--destroy" ]; then
  exec pulumi destroy --yes --stack "$stack"
fi

# A stack whose app build reads Go modules from the host's loopback gets a
# module proxy for the duration of the update.
if grep -q 'GOPROXY: http://127.0.0.1:3001' "Pulumi.$stack.yaml" 2>/dev/null; then
  (cd app && go mod download)
  go build -o .pulumi-state/modproxy ./tools/modproxy
  .pulumi-state/modproxy -addr 127.0.0.1:3001 >/dev/null &
  proxy=$!
  trap 'kill $proxy 2>/dev/null || true' EXIT
fi

pulumi up --yes --skip-preview --stack "$stack"
pulumi stack output --stack "$stack"
