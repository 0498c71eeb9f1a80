# Installs the router config staged in /polls/next into conf.d and reloads
# nginx in place. Runs in the router's PID namespace, where nginx's master is
# PID 1. Nothing live changes unless `nginx -t` accepts the new config.
next=/polls/next
conf=/etc/nginx/conf.d

grep -q nginx /proc/1/cmdline || { echo "PID 1 is not nginx: is the router running?" >&2; exit 1; }

# Certificates are named by content hash: copying them never touches the
# files the running config uses.
mkdir -p "$conf/tls"
if [ -d "$next/tls" ]; then cp "$next"/tls/* "$conf/tls/"; chmod 600 "$conf"/tls/*.key 2>/dev/null || true; fi

cat > /tmp/check.conf <<CHECK
events {}
http {
    include /etc/nginx/mime.types;
    include $next/polls.conf;
}
CHECK
nginx -t -q -c /tmp/check.conf

cp "$next/polls.conf" "$conf/.polls.conf.new"
mv "$conf/.polls.conf.new" "$conf/polls.conf"
# Only our config serves: drop the image's default.conf that Docker copied
# into the fresh volume, and anything else that is not ours.
for f in "$conf"/*.conf; do
    [ "$f" = "$conf/polls.conf" ] || rm -f "$f"
done

workers() {
    for p in /proc/[0-9]*; do
        case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
        "nginx: worker"*) echo "${p#/proc/}" ;;
        esac
    done
}
old=" $(workers | tr '\n' ' ') "
kill -HUP 1
# nginx reloads asynchronously: wait for a worker started by this reload.
i=0
while :; do
    for p in $(workers); do
        case "$old" in *" $p "*) ;; *) echo "installed polls.conf and reloaded nginx"; exit 0 ;; esac
    done
    i=$((i + 1))
    [ "$i" -lt 100 ] || { echo "nginx started no new worker within 10s of SIGHUP" >&2; exit 1; }
    sleep 0.1
done
