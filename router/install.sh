# Installs router config staged in /polls/next into conf.d and reloads nginx
# in place. Runs in the router's PID namespace, where nginx's master is PID 1.
#
#   install.sh base           polls.conf (default server, includes the
#                             tenants' files), TLS files, acme.hosts (with
#                             ACME), and tenants.list: files of tenants not
#                             listed are removed
#   install.sh route TENANT   tenants/TENANT.conf, one tenant's servers
#
# Installers of one router take turns (flock on the shared volume). Nothing
# stays live unless `nginx -t` accepts the whole resulting config: on a
# rejection the files are put back as they were and nginx is not reloaded.
mode=$1
tenant=${2:-}
next=/polls/next
conf=/etc/nginx/conf.d
tenants=$conf/tenants

grep -q nginx /proc/1/cmdline || { echo "PID 1 is not nginx: is the router running?" >&2; exit 1; }
mkdir -p "$tenants" "$conf/tls"
exec 9>"$conf/.lock"
flock 9

# Keep what is there, to put it back if nginx rejects the result.
backup=$(mktemp -d)
cp -a "$conf/." "$backup/"
restore() {
    rm -rf "$tenants" "$conf"/*.conf
    cp -a "$backup/." "$conf/"
}

case "$mode" in
base)
    # Certificates are named by content hash: copying them never touches
    # the files the running config uses.
    if [ -d "$next/tls" ]; then cp "$next"/tls/* "$conf/tls/"; chmod 600 "$conf"/tls/*.key 2>/dev/null || true; fi
    cp "$next/polls.conf" "$conf/.polls.conf.new"
    mv "$conf/.polls.conf.new" "$conf/polls.conf"
    # The hosts the certificate companion keeps certificates for (ACME);
    # nginx never reads this file.
    if [ -f "$next/acme.hosts" ]; then
        cp "$next/acme.hosts" "$conf/.acme.hosts.new"
        mv "$conf/.acme.hosts.new" "$conf/acme.hosts"
    else
        rm -f "$conf/acme.hosts"
    fi
    # Only our config serves: drop the image's default.conf that Docker
    # copied into the fresh volume, and anything else that is not ours.
    for f in "$conf"/*.conf; do
        [ "$f" = "$conf/polls.conf" ] || rm -f "$f"
    done
    # Tenants removed from the stack stop being routed (404).
    for f in "$tenants"/*.conf; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .conf)
        grep -qx "$name" "$next/tenants.list" || rm -f "$f"
    done
    what="polls.conf"
    ;;
route)
    [ -n "$tenant" ] || { echo "usage: install.sh route TENANT" >&2; exit 2; }
    cp "$next/tenants/$tenant.conf" "$tenants/.$tenant.conf.new"
    mv "$tenants/.$tenant.conf.new" "$tenants/$tenant.conf"
    what="tenants/$tenant.conf"
    ;;
*)
    echo "usage: install.sh base | route TENANT" >&2
    exit 2
    ;;
esac

if ! nginx -t -q 2>/tmp/nginx-t.log; then
    cat /tmp/nginx-t.log >&2
    restore
    echo "nginx -t rejected the new $what: nothing changed" >&2
    exit 1
fi

# workers lists the workers that take new requests. On a reload nginx
# starts new workers first and only then tells the old ones to quit; an old
# one still open to requests would serve the old config, also on a client's
# kept-alive connection. One told to quit renames itself "worker process is
# shutting down" and closes its idle connections.
workers() {
    for p in /proc/[0-9]*; do
        case "$({ tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null)" in
        "nginx: worker process is shutting down"*) ;;
        "nginx: worker"*) echo "${p#/proc/}" ;;
        esac
    done
}
old=" $(workers | tr '\n' ' ') "
kill -HUP 1
# nginx reloads asynchronously: wait until every worker that takes requests
# was started by this reload.
i=0
while :; do
    new=0 stale=0
    for p in $(workers); do
        case "$old" in *" $p "*) stale=1 ;; *) new=1 ;; esac
    done
    [ "$new" = 1 ] && [ "$stale" = 0 ] && { echo "installed $what and reloaded nginx"; exit 0; }
    i=$((i + 1))
    [ "$i" -lt 100 ] || { echo "nginx did not replace its workers within 10s of SIGHUP" >&2; exit 1; }
    sleep 0.1
done
