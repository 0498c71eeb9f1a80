#!/usr/bin/env bash
#
# Entrypoint of polls-local/postgres:15.  Mirrors the contract of the official
# postgres image's docker-entrypoint.sh so compose files written for
# postgres:15 work unchanged:
#
#   POSTGRES_PASSWORD / POSTGRES_PASSWORD_FILE  superuser password (required
#                                  unless POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER),
#   POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default: the server's
#   password_encryption, i.e. scram-sha-256), PGDATA
#   (default /var/lib/postgresql/data); every POSTGRES_* also as *_FILE.
#   /docker-entrypoint-initdb.d/*.sh, *.sql, *.sql.gz run once after initdb.
#
# On an empty $PGDATA: initdb as postgres (--username=$POSTGRES_USER, password
# from a pipe; initdb's default "trust" stays for the unix socket and
# 127.0.0.1/::1), append "host all all all <method>" to pg_hba.conf, start a
# temporary server on the unix socket only, create $POSTGRES_DB, run the init
# scripts, stop it.  A $PGDATA that already has PG_VERSION is used as is.
# Finally exec postgres as the postgres user (setpriv instead of gosu), so it
# is PID 1 and gets the stop signal (SIGINT) directly.
set -Eeo pipefail

# file_env VAR [DEFAULT]: VAR from $VAR or from the file named by $VAR_FILE.
file_env() {
	local var="$1" def="${2:-}"
	local file_var="${var}_FILE"
	if [ "${!var:-}" ] && [ "${!file_var:-}" ]; then
		printf >&2 'error: both %s and %s are set (but are exclusive)\n' "$var" "$file_var"
		exit 1
	fi
	local val="$def"
	if [ "${!var:-}" ]; then
		val="${!var}"
	elif [ "${!file_var:-}" ]; then
		val="$(<"${!file_var}")"
	fi
	export "$var"="$val"
	unset "$file_var"
}

# Arguments that make postgres print something and exit: skip all setup.
pg_want_help() {
	local arg
	for arg; do
		case "$arg" in
			-'?' | --help | --describe-config | -V | --version) return 0 ;;
		esac
	done
	return 1
}

setup_env() {
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER 'postgres'
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	: "${POSTGRES_HOST_AUTH_METHOD:=}"
	export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
	DATABASE_ALREADY_EXISTS=
	if [ -s "$PGDATA/PG_VERSION" ]; then
		DATABASE_ALREADY_EXISTS=true
	fi
}

create_db_directories() {
	local user
	user="$(id -u)"
	mkdir -p "$PGDATA"
	# ignore failure: e.g. a bind mount owned by someone else, initdb will complain
	chmod 00700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :
	chmod 03777 /var/run/postgresql || :
	if [ "$user" = '0' ]; then
		find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
		find /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
	fi
}

verify_minimum_env() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ 'trust' != "$POSTGRES_HOST_AUTH_METHOD" ]; then
		cat >&2 <<-'EOE'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a
			       non-empty value for the superuser, or POSTGRES_HOST_AUTH_METHOD=trust
			       to allow all connections without a password (not recommended).
		EOE
		exit 1
	fi
}

init_database_dir() {
	# POSTGRES_INITDB_ARGS is word-split on purpose (official image behaviour);
	# the <(...) must be on initdb's own command line to stay open for it
	# shellcheck disable=SC2086
	initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
		$POSTGRES_INITDB_ARGS
}

setup_hba_conf() {
	if [ "$1" = 'postgres' ]; then shift; fi
	local auth
	auth="$(postgres -C password_encryption "$@")"
	: "${POSTGRES_HOST_AUTH_METHOD:=$auth}"
	{
		printf '\n'
		if [ 'trust' = "$POSTGRES_HOST_AUTH_METHOD" ]; then
			printf '# warning: trust is enabled for all connections\n'
		fi
		printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
	} >>"$PGDATA/pg_hba.conf"
}

process_sql() {
	local -a query_runner=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
	if [ -n "$POSTGRES_DB" ]; then
		query_runner+=(--dbname "$POSTGRES_DB")
	fi
	PGHOST='' PGHOSTADDR='' "${query_runner[@]}" "$@"
}

temp_server_start() {
	if [ "$1" = 'postgres' ]; then shift; fi
	# unix socket only: nothing outside the container can connect meanwhile
	set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
	PGUSER="${PGUSER:-$POSTGRES_USER}" pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

temp_server_stop() {
	PGUSER="${PGUSER:-$POSTGRES_USER}" pg_ctl -D "$PGDATA" -m fast -w stop
}

setup_db() {
	local db="$POSTGRES_DB" exists
	exists="$(POSTGRES_DB='' process_sql --dbname postgres --set db="$db" --tuples-only <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db' ;
	EOSQL
	)"
	if [ -z "$exists" ]; then
		POSTGRES_DB='' process_sql --dbname postgres --set db="$db" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
		printf '\n'
	fi
}

process_init_files() {
	local f
	printf '\n'
	for f; do
		[ -e "$f" ] || continue # unmatched glob: empty directory
		case "$f" in
			*.sh)
				if [ -x "$f" ]; then
					printf '%s: running %s\n' "$0" "$f"
					"$f"
				else
					printf '%s: sourcing %s\n' "$0" "$f"
					# shellcheck disable=SC1090
					. "$f"
				fi
				;;
			*.sql)
				printf '%s: running %s\n' "$0" "$f"
				process_sql -f "$f"
				printf '\n'
				;;
			*.sql.gz)
				printf '%s: running %s\n' "$0" "$f"
				gunzip -c "$f" | process_sql
				printf '\n'
				;;
			*) printf '%s: ignoring %s\n' "$0" "$f" ;;
		esac
	done
}

main() {
	# "docker run image -c foo=bar" means postgres -c foo=bar
	if [ "${1:0:1}" = '-' ]; then
		set -- postgres "$@"
	fi

	if [ "$1" = 'postgres' ] && ! pg_want_help "$@"; then
		setup_env
		create_db_directories
		if [ "$(id -u)" = '0' ]; then
			# re-run this script as postgres (the official image uses gosu)
			HOME=/var/lib/postgresql exec setpriv --reuid=postgres --regid=postgres --init-groups \
				"${BASH_SOURCE[0]}" "$@"
		fi

		if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
			verify_minimum_env
			init_database_dir
			setup_hba_conf "$@"

			# the temporary server and psql use the superuser's password via the
			# environment; trust on the unix socket makes it optional anyway
			export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
			temp_server_start "$@"
			setup_db
			process_init_files /docker-entrypoint-initdb.d/*
			temp_server_stop
			unset PGPASSWORD

			printf '\nPostgreSQL init process complete; ready for start up.\n\n'
		else
			printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
		fi
	fi

	exec "$@"
}

main "$@"
