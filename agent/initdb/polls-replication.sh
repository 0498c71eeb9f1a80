#!/bin/sh
# Run once, when the image initialises an empty data directory: the tenant's
# backup agent streams the write-ahead log with the tenant's role and
# password (pg_hba.conf's "all" database does not cover replication).
set -e
printf '\n# the tenant'"'"'s backup agent streams the write-ahead log\nhost replication all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
