#!/usr/bin/env bash
#
# Entrypoint of polls-local/nginx:1, modelled on the official nginx image's:
# when starting nginx, first
#   * render /etc/nginx/templates/**/*.template into /etc/nginx/conf.d/ with
#     envsubst, substituting only variables that are set (and match
#     NGINX_ENVSUBST_FILTER, a regex, if given) so nginx's own $variables
#     survive; NGINX_ENVSUBST_TEMPLATE_DIR / _TEMPLATE_SUFFIX / _OUTPUT_DIR
#     override the defaults;
#   * run the executable /docker-entrypoint.d/*.sh (sourcing *.envsh) in
#     version order;
# then exec the command so nginx is PID 1 and receives the stop signal.
# NGINX_ENTRYPOINT_QUIET_LOGS=1 silences the entrypoint's own messages.
set -eo pipefail

entrypoint_log() {
	if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
		printf '%s\n' "$*"
	fi
}

render_templates() {
	local template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
	local suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
	local output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
	local filter="${NGINX_ENVSUBST_FILTER:-}"
	local name defined_envs='' template relative_path output_path

	[ -d "$template_dir" ] || return 0
	if [ ! -w "$output_dir" ]; then
		entrypoint_log "$0: ERROR: $template_dir exists, but $output_dir is not writable"
		return 0
	fi
	while read -r name; do
		if [ -z "$filter" ] || [[ "$name" =~ $filter ]]; then
			defined_envs+="\${$name} "
		fi
	done < <(compgen -e)
	while read -r template; do
		relative_path="${template#"$template_dir/"}"
		output_path="$output_dir/${relative_path%"$suffix"}"
		mkdir -p "$(dirname "$output_path")"
		entrypoint_log "$0: running envsubst on $template to $output_path"
		envsubst "$defined_envs" <"$template" >"$output_path"
	done < <(find "$template_dir" -follow -type f -name "*$suffix" -print | sort)
}

run_entrypoint_d() {
	local f
	while read -r f; do
		case "$f" in
			*.envsh)
				if [ -x "$f" ]; then
					entrypoint_log "$0: sourcing $f"
					# shellcheck disable=SC1090
					. "$f"
				else
					entrypoint_log "$0: ignoring $f, not executable"
				fi
				;;
			*.sh)
				if [ -x "$f" ]; then
					entrypoint_log "$0: launching $f"
					"$f"
				else
					entrypoint_log "$0: ignoring $f, not executable"
				fi
				;;
			*) entrypoint_log "$0: ignoring $f" ;;
		esac
	done < <(find /docker-entrypoint.d/ -follow -type f -print 2>/dev/null | sort -V)
}

if [ "${1:-}" = nginx ] || [ "${1:-}" = nginx-debug ]; then
	render_templates
	run_entrypoint_d
	entrypoint_log "$0: ready for start up"
fi

exec "$@"
