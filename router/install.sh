# Installs the router config staged in /polls/next into conf.d and reloads
# nginx in place. Runs in the router's PID namespace, where nginx's master
# is PID 1.
#
#   install.sh    polls.conf (default server, includes tenants/*.conf),
#                 acme.hosts (with ACME), and tenants/routes.conf, every
#                 tenant's servers; any other file in tenants/ (one per
#                 tenant, from before routes.conf) is removed. A
#                 certificate of polls:tls is in tls/ before this runs.
#
# Installers of one router take turns (flock on the shared volume). Nothing
# stays live unless `nginx -t` accepts the whole resulting config: on a
# rejection the files are put back as they were and nginx is not reloaded.
#
# An installer that changes or removes a route exits only once the nginx
# workers from before its reload are gone (at most drain_limit seconds):
# until then a connection they accepted but had no request on yet is
# served with the old route, and the app that route names must still be
# there. A removed tenant's app goes after the installer (Pulumi removes
# it at the end of the update); a release changes no route, and an app it
# replaces is stopped only once the tenant's route is live.
drain=0
next=/polls/next
conf=/etc/nginx/conf.d
tenants=$conf/tenants
# The router's client_header_timeout (nginx/router.conf.tmpl), which bounds
# how long an old worker keeps a connection with no request yet, plus time
# for the request it then gets to be answered.
drain_limit=15

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

cp "$next/polls.conf" "$conf/.polls.conf.new"
mv "$conf/.polls.conf.new" "$conf/polls.conf"
# Only our config serves: drop the image's default.conf that Docker copied
# into the fresh volume, and anything else that is not ours (tenants.list,
# from before one installer wrote every route).
for f in "$conf"/*.conf; do
    [ "$f" = "$conf/polls.conf" ] || rm -f "$f"
done
rm -f "$conf/tenants.list"
# The tenants' routes, swapped in as a whole. A line of the old routes
# that the new ones lack (a route changed or removed) drains the old
# workers below; a tenant added takes nothing away. A removed tenant stops
# being routed (404).
mkdir -p "$next/tenants"
rm -rf "$conf/.tenants.new" "$conf/.tenants.old"
cp -a "$next/tenants" "$conf/.tenants.new"
cat "$tenants"/*.conf 2>/dev/null | sort >"$backup.old-routes"
cat "$conf/.tenants.new"/*.conf 2>/dev/null | sort >"$backup.new-routes"
[ -z "$(comm -23 "$backup.old-routes" "$backup.new-routes")" ] || drain=1
mv "$tenants" "$conf/.tenants.old"
mv "$conf/.tenants.new" "$tenants"
rm -rf "$conf/.tenants.old"

if ! nginx -t -q 2>/tmp/nginx-t.log; then
    cat /tmp/nginx-t.log >&2
    restore
    echo "nginx -t rejected the new config: nothing changed" >&2
    exit 1
fi

# workers lists the workers that take new requests; "workers all" also those
# shutting down. On a reload nginx starts new workers first and only then
# tells the old ones to quit; an old one still open to requests would serve
# the old config, also on a client's kept-alive connection. One told to quit
# renames itself "worker process is shutting down" and closes its idle
# connections. One grep reads every process's command line: a `tr` per
# process cost about 4 ms each, and in releases of 100 tenants, when each
# tenant had an installer of its own, up to 40 processes (installers
# waiting their turn, each a shell and its flock) shared this PID
# namespace. The bracket keeps grep from matching its own
# command line.
worker='nginx: worker proces[s]'
any_worker="$worker( is shutting down)?"
workers() {
    re=$worker
    if [ "${1:-}" = all ]; then re=$any_worker; fi
    grep -slzxE "$re" /proc/[0-9]*/cmdline | cut -d/ -f3
}
# alive PID... prints how many of the PIDs are still nginx workers.
alive() {
    [ $# -gt 0 ] || { echo 0; return; }
    for p; do set -- "$@" "/proc/$p/cmdline"; shift; done
    grep -slzxE "$any_worker" "$@" | wc -l
}
old=" $(workers | tr '\n' ' ') "
before=$(workers all)
kill -HUP 1
# nginx reloads asynchronously: wait until every worker that takes requests
# was started by this reload.
i=0
while :; do
    new=0 stale=0
    for p in $(workers); do
        case "$old" in *" $p "*) stale=1 ;; *) new=1 ;; esac
    done
    [ "$new" = 1 ] && [ "$stale" = 0 ] && break
    i=$((i + 1))
    [ "$i" -lt 100 ] || { echo "nginx did not replace its workers within 10s of SIGHUP" >&2; exit 1; }
    sleep 0.1
done
# The hosts the certificate companion keeps certificates for (ACME); nginx
# never reads this file. Written once nginx serves the new config: the
# companion orders a host's certificate as soon as it reads the host here,
# and the CA then asks for the HTTP-01 answer at once, which only the new
# config's webroot location serves (written before the reload, a Swarm CI
# run's three orders got the apps' 404 and failed).
if [ -f "$next/acme.hosts" ]; then
    cp "$next/acme.hosts" "$conf/.acme.hosts.new"
    mv "$conf/.acme.hosts.new" "$conf/acme.hosts"
else
    rm -f "$conf/acme.hosts"
fi
echo "installed the config ($(cat "$tenants"/*.conf | grep -c '^# tenant ') tenants) and reloaded nginx"
[ "$drain" = 1 ] || exit 0

# The next installer need not wait for this one's old workers.
exec 9>&-
# A worker told to quit closes its idle kept-alive connections at once and
# exits when its last connection is done: one accepted before the reload
# and not yet used is answered with the config from before it, whenever
# its request comes (within client_header_timeout).
i=0
while :; do
    left=$(alive $before)
    [ "$left" = 0 ] && { [ "$i" = 0 ] || echo "the workers from before the reload finished their connections within $((i / 10)).$((i % 10))s"; exit 0; }
    i=$((i + 1))
    if [ "$i" -ge $((drain_limit * 10)) ]; then
        echo "$left nginx workers from before the reload still hold connections after ${drain_limit}s (requests in flight, or slow clients): a request they take from now on may find the replaced app gone" >&2
        exit 0
    fi
    sleep 0.1
done
