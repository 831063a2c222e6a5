#!/usr/bin/env bash
# Requests per second of counting a request, as ratios to a bare `return 200` on
# the same nginx, measured in one run with rounds interleaved to cancel drift.
#
#   1. objs/nginx (vendored 1.28): bare, $shared_map_incr, shared_map_count.
#   2. Debian's /usr/sbin/nginx 1.22 (if `make build-debian` was run and
#      libnginx-mod-http-lua is installed): bare, $shared_map_incr, lua_shared_dict incr.
#
# PINNED=1 runs one nginx worker on CPU 0 and wrk on CPU 1, so that nginx's
# requests per second measure its own per-request cost with less noise than the
# default (2 workers and wrk sharing 2 cores, as peers.md measured lua_shared_dict).
#
# Loopback only; bounded: ROUNDS x locations x DURATION seconds per part.
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
PORT=${PORT:-8099}
need wrk
workdir bench
pinning

start() { # name binary config
    mkdir -p "$WORK/$1/logs"
    printf '%s\n' "$3" > "$WORK/$1/nginx.conf"
    "$2" -p "$WORK/$1/" -c "$WORK/$1/nginx.conf"
    sleep 0.5
}
stop() { kill -QUIT "$(cat "$WORK/$1/logs/nginx.pid")"; sleep 0.5; }

rps() { # url
    $WRK -t1 -c"$CONNS" -d"${DURATION}s" "$1" | awk '/Requests\/sec/ { print $2 }'
}


run_part() { # title, then pairs of "label path"
    local title=$1; shift
    local labels=() paths=()
    while [ $# -gt 0 ]; do labels+=("$1"); paths+=("$2"); shift 2; done
    declare -A results
    for l in "${labels[@]}"; do results[$l]=""; done
    for r in $(seq "$ROUNDS"); do
        for i in "${!labels[@]}"; do
            results[${labels[$i]}]+="$(rps "http://127.0.0.1:$PORT${paths[$i]}") "
        done
    done
    echo "## $title"
    echo
    echo "| location | requests/s (median of $ROUNDS) | ratio to bare |"
    echo "| --- | --- | --- |"
    local base
    base=$(echo "${results[${labels[0]}]}" | tr ' ' '\n' | grep . | median)
    for l in "${labels[@]}"; do
        local m
        m=$(echo "${results[$l]}" | tr ' ' '\n' | grep . | median)
        printf '| %s | %.0f | %.3f |\n' "$l" "$m" "$(echo "$m / $base" | bc -l)"
    done
    echo
}

COMMON="$WORKERS error_log logs/error.log; pid logs/nginx.pid;
events { worker_connections 1024; }"

start vendored "$PWD/objs/nginx" "load_module $PWD/objs/ngx_http_shared_map_module.so;
$COMMON
http { access_log off;
  shared_map counters tinymap?space=1m&entries=8096;
  server { listen 127.0.0.1:$PORT;
    location = /bare { return 200 \"ok\"; }
    location = /incr { shared_map_key counters \$uri; return 200 \$shared_map_incr; }
    location = /count { shared_map_count counters \$uri; return 200 \"ok\"; }
  } }"
echo "# nginx counting benchmark ($(date -u +%Y-%m-%d), wrk -t1 -c$CONNS -d${DURATION}s, $WORKERS loopback)"
echo
run_part "objs/nginx $("$PWD/objs/nginx" -v 2>&1 | sed 's/.*\///')" \
    "bare return 200" /bare '$shared_map_incr' /incr 'shared_map_count' /count
stop vendored

LUA=/usr/lib/nginx/modules/ngx_http_lua_module.so
if [ -x /usr/sbin/nginx ] && [ -f "$LUA" ] && [ -f objs/debian/ngx_http_shared_map_module.so ]; then
    start debian /usr/sbin/nginx "load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module $LUA;
load_module $PWD/objs/debian/ngx_http_shared_map_module.so;
$COMMON
http { access_log off;
  lua_shared_dict lcounters 1m;
  shared_map counters tinymap?space=1m&entries=8096;
  server { listen 127.0.0.1:$PORT;
    location = /bare { return 200 \"ok\"; }
    location = /incr { shared_map_key counters \$uri; return 200 \$shared_map_incr; }
    location = /lua { content_by_lua_block { local v = ngx.shared.lcounters:incr(ngx.var.uri, 1, 0) ngx.print(v) } }
  } }"
    run_part "Debian /usr/sbin/nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///') with libnginx-mod-http-lua" \
        "bare return 200" /bare '$shared_map_incr' /incr 'lua_shared_dict incr' /lua
    stop debian
else
    echo "(Debian nginx with lua or objs/debian module missing: skipped the lua_shared_dict comparison;"
    echo " apt-get install nginx-core nginx-dev libnginx-mod-http-lua && make build-debian)"
fi
