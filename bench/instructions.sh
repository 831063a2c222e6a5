#!/usr/bin/env bash
# Instructions nginx executes per request, counted by valgrind's callgrind: exact
# and repeatable, whatever else the machine is doing (unlike requests per second
# on a shared 2-core machine). Per location, the count is
#   (instructions for N2 requests - instructions for N1 requests) / (N2 - N1),
# which cancels start-up and shutdown. Requests: ab -k (keepalive), one at a time.
#
# The baseline is the same nginx WITHOUT the module, serving /bare from the
# same location tree (every location present, the module's directives left
# out), so "over nginx" is what the module costs: loaded and unused (/bare),
# and per feature.
source "$(dirname "$0")/lib.sh"
LUA_LOCATION=""
# Named variables: declared in the http lines of the report that measures them.
NAMED_LOCATIONS='location = /var { return 200 $named_value; }
    location = /nincr { return 200 $named_hits; }
    location = /ip { return 200 $named_range; }
    location = /nincraddr { return 200 $addr_hits; }'
PORT=${PORT:-8098}
# The nginx and the module measured (NGINX_BIN, MODULE_SO; by default the ones
# `make build` made). Not NGINX: nginx reads that variable as inherited sockets.
NGINX_PATH=$(realpath "${NGINX_BIN:-objs/nginx}")
MODULE_PATH=$(realpath "${MODULE_SO:-objs/ngx_http_shared_map_module.so}")
N1=${N1:-1000}
N2=${N2:-3000}
need valgrind
need ab apache2-utils

# The locations without the module's directives, for the baseline.
PLAIN_LOCATIONS='location = /incr { return 200 "ok"; }
    location = /count { return 200 "ok"; }
    location = /var { return 200 "ok"; }
    location = /nincr { return 200 "ok"; }
    location = /ip { return 200 "ok"; }
    location = /countaddr { return 200 "ok"; }
    location = /nincraddr { return 200 "ok"; }'
MODULE_LOCATIONS='location = /incr { shared_map_key counters $uri; return 200 $shared_map_incr; }
    location = /count { shared_map_count counters $uri; return 200 "ok"; }
    location = /countaddr { shared_map_count counters $remote_addr; return 200 "ok"; }'

# Runs nginx (binary $2, with $1/nginx.conf) under callgrind, sends it the
# load (the rest of the arguments) once it listens, stops it, and prints the
# instructions it executed in all.
callgrind_run() { # dir, binary, load command...
    local dir=$1 bin=$2 vpid i
    shift 2
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" -p "$dir/" -c "$dir/nginx.conf" \
        2>"$dir/valgrind.log" &
    vpid=$!
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    "$@" >/dev/null
    # Under valgrind a signal now and then goes unhandled: ask again until
    # nginx has stopped.
    for i in $(seq 120); do
        kill -0 "$vpid" 2>/dev/null || break
        [ $((i % 10)) = 1 ] && kill -QUIT "$vpid" 2>/dev/null
        sleep 0.5
    done
    wait "$vpid" || true
    callgrind_annotate "$dir/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
    rm -rf "$dir"
}

total() { # binary, main-level lines, http-level lines, location path, requests
    local dir
    dir=$(mktemp -d /tmp/shared-map-instr.XXXXXX)
    mkdir -p "$dir/logs"
    cat > "$dir/nginx.conf" <<CONF
$2
daemon off; master_process off; worker_processes 1;
error_log logs/error.log; pid logs/nginx.pid;
events { worker_connections 64; }
http { access_log off;
  $3
  server { listen 127.0.0.1:$PORT;
    location = /bare { return 200 "ok"; }
    $LOCATIONS
    $NAMED_LOCATIONS
    $LUA_LOCATION
  } }
CONF
    callgrind_run "$dir" "$1" ab -q -k -n "$5" -c 1 "http://127.0.0.1:$PORT$4"
}

per_request() { # binary, main lines, http lines, path
    local a b
    a=$(total "$1" "$2" "$3" "$4" "$N1")
    b=$(total "$1" "$2" "$3" "$4" "$N2")
    echo $(( (b - a) / (N2 - N1) ))
}

report() { # title, binary, main lines, http lines, baseline (empty: the first row), then "label path" pairs
    local title=$1 bin=$2 main=$3 http=$4 base=$5; shift 5
    echo "## $title"
    echo
    echo "| location | instructions per request | ratio to the baseline |"
    echo "| --- | --- | --- |"
    while [ $# -gt 0 ]; do
        local n
        n=$(per_request "$bin" "$main" "$http" "$2")
        [ -z "$base" ] && base=$n
        printf '| %s | %d | %.4f |\n' "$1" "$n" "$(echo "$n / $base" | bc -l)"
        shift 2
    done
    echo
}

echo "# Instructions per request (callgrind, $N1 and $N2 keepalive requests, $(date -u +%Y-%m-%d))"
echo
VERSION=$("$NGINX_PATH" -v 2>&1 | sed 's/.*\///')
LOCATIONS=$PLAIN_LOCATIONS
SAVED_NAMED=$NAMED_LOCATIONS
NAMED_LOCATIONS=""
BASE=$(per_request "$NGINX_PATH" "" "" /bare)
echo "Baseline: $NGINX_PATH ($VERSION) without the module, /bare, the same location tree: $BASE instructions."
echo
LOCATIONS=$MODULE_LOCATIONS
NAMED_LOCATIONS=$SAVED_NAMED
report "$NGINX_PATH ($VERSION) with $MODULE_PATH, over the baseline" "$NGINX_PATH" \
    "load_module $MODULE_PATH;" \
    "shared_map counters tinymap?space=1m&entries=8096;
     shared_map_var /incr \$named_value map=counters; shared_map_incr \$uri \$named_hits map=counters;
     shared_map_incr \$remote_addr \$addr_hits map=counters;
     shared_map ranges hashmap?space=1m&match=ip; shared_map_var \$remote_addr \$named_range map=ranges;" \
    "$BASE" "bare return 200 (the module unused)" /bare '$shared_map_incr' /incr 'shared_map_count' /count \
    'shared_map_count $remote_addr (as the stream rows)' /countaddr \
    'shared_map_var (absent key)' /var 'shared_map_incr' /nincr \
    'shared_map_incr $remote_addr (as the stream rows)' /nincraddr 'shared_map_var, match=ip (empty map)' /ip

# Stream: instructions per TCP session (connect, read the reply, close), for a
# bare `return` and for the same server counting. A counted session should
# cost over the bare one no more than a counted request costs over
# `return 200` above.
SESSIONS_CLIENT='import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    while s.recv(4096):
        pass
    s.close()'

stream_total() { # stream lines, server lines, sessions
    local dir
    dir=$(mktemp -d /tmp/shared-map-instr.XXXXXX)
    mkdir -p "$dir/logs"
    cat > "$dir/nginx.conf" <<CONF
load_module $MODULE_PATH;
daemon off; master_process off; worker_processes 1;
error_log logs/error.log; pid logs/nginx.pid;
events { worker_connections 64; }
stream {
  $1
  server { listen 127.0.0.1:$PORT; $2 }
}
CONF
    callgrind_run "$dir" "$NGINX_PATH" python3 -c "$SESSIONS_CLIENT" "$PORT" "$3"
}

STREAM_MAPS='shared_map conns tinymap?space=1m&entries=8096; shared_map_incr $remote_addr $conn_count map=conns;'
echo "## stream: objs/nginx, instructions per TCP session"
echo
echo "| server | instructions per session | over bare |"
echo "| --- | --- | --- |"
base=""
for variant in 'bare return|return "ok";' \
               'shared_map_count|shared_map_count conns $remote_addr; return "ok";' \
               'shared_map_incr variable|return $conn_count;'; do
    a=$(stream_total "$STREAM_MAPS" "${variant#*|}" "$N1")
    b=$(stream_total "$STREAM_MAPS" "${variant#*|}" "$N2")
    n=$(( (b - a) / (N2 - N1) ))
    [ -z "$base" ] && base=$n
    printf '| %s | %d | %+d |\n' "${variant%%|*}" "$n" "$((n - base))"
done
echo

LUA=/usr/lib/nginx/modules/ngx_http_lua_module.so
NAMED_LOCATIONS=""
LUA_LOCATION='location = /lua { content_by_lua_block { local v = ngx.shared.lcounters:incr(ngx.var.uri, 1, 0) ngx.print(v) } }'
if [ -x /usr/sbin/nginx ] && [ -f "$LUA" ] && [ -f objs/debian/ngx_http_shared_map_module.so ]; then
    report "Debian /usr/sbin/nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///') with libnginx-mod-http-lua" /usr/sbin/nginx \
        "load_module /usr/lib/nginx/modules/ndk_http_module.so; load_module $LUA; load_module $PWD/objs/debian/ngx_http_shared_map_module.so;" \
        "shared_map counters tinymap?space=1m&entries=8096; lua_shared_dict lcounters 1m;" "" \
        "bare return 200" /bare '$shared_map_incr' /incr 'lua_shared_dict incr' /lua
fi
