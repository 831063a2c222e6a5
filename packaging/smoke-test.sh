#!/bin/sh
# Loads the module into an nginx and counts: three requests for /a, then the
# count of /a read through $shared_map_value must be 3, whichever of the two
# workers answered. nginx runs with a prefix and configuration of its own on a
# loopback port, so a system nginx is not disturbed.
#
#   packaging/smoke-test.sh NGINX MODULE.so PORT
set -eu

nginx=$1
module=$2
port=$3

dir=$(mktemp -d)
mkdir -p "$dir/logs" "$dir/conf"
cleanup() {
    if [ -f "$dir/logs/nginx.pid" ]; then
        kill -QUIT "$(cat "$dir/logs/nginx.pid")" 2>/dev/null || true
        sleep 0.5
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

cat > "$dir/conf/nginx.conf" <<EOF
load_module $module;
worker_processes 2;
error_log $dir/logs/error.log;
pid $dir/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;

    shared_map hits tinymap?space=1m;
    shared_map_count hits \$uri;

    server {
        listen 127.0.0.1:$port;
        location = /count { shared_map_key hits \$arg_uri; return 200 "\$arg_uri: \$shared_map_value\n"; }
        location / { return 200 "ok\n"; }
    }
}
EOF

"$nginx" -p "$dir/" -c "$dir/conf/nginx.conf" -e "$dir/logs/error.log"
for _ in 1 2 3; do curl -fsS -o /dev/null "http://127.0.0.1:$port/a"; done
got=$(curl -fsS "http://127.0.0.1:$port/count?uri=/a")
if [ "$got" != "/a: 3" ]; then
    echo "smoke test FAILED with $nginx and $module: got \"$got\", expected \"/a: 3\"" >&2
    cat "$dir/logs/error.log" >&2
    exit 1
fi
echo "smoke test ok: $("$nginx" -v 2>&1) loaded $module and counted /a: 3"
