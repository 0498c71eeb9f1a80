# shellcheck shell=bash
# Sourced by scripts/up.sh and scripts/recover.sh: the local file backend
# (state under .pulumi-state/ in the repo, git-ignored) unless
# PULUMI_BACKEND_URL says otherwise, and PULUMI_CONFIG_PASSPHRASE, which
# encrypts the stack's secrets: a fixed development passphrase only when
# unset, to be set for anything that is not a throwaway dev stack. Run from
# the repository's root.
export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$PWD/.pulumi-state}
export PULUMI_CONFIG_PASSPHRASE=${PULUMI_CONFIG_PASSPHRASE-polls-dev-only}
export PULUMI_SKIP_UPDATE_CHECK=1
command -v pulumi >/dev/null || { echo "pulumi CLI not found on PATH" >&2; exit 1; }
