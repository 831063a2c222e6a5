#!/usr/bin/env bash
# Replication through Redis (`sync`), on loopback with a local redis-server:
#
#   1. the cost per request of counting into a synced map against an unsynced
#      one: requests per second, `wrk -t1 -c32`, rounds interleaved, medians;
#   2. replicated writes per second: host A takes writes to distinct keys, as
#      fast as wrk sends them, then at about 10000 per second (wrk's `delay`);
#      host B's `applied` statistic, read before and after, gives the changes
#      it received per second; host B's `lag_ms` (a change's arrival in Redis
#      to its application on B), sampled every 50 ms, its median and p99.
#
# Bounded: ROUNDS x 2 x DURATION seconds, then DURATION seconds.
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
PORT=${PORT:-8099}
RPORT=${RPORT:-16999}
NGINX=${NGINX:-objs/nginx}
MODULE=${MODULE:-$PWD/objs/ngx_http_shared_map_module.so}
before_cleanup() {
    redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true
}
need wrk
need redis-server
workdir redis-bench

redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$WORK" --logfile "$WORK/redis.log"
sleep 0.3

host() { # name port
    mkdir -p "$WORK/$1/logs"
    cat > "$WORK/$1/nginx.conf" <<CONF
load_module $MODULE;
worker_processes 2;
error_log logs/error.log;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    shared_map_redis 127.0.0.1:$RPORT prefix=bench;
    shared_map plain tinymap?space=16m&entries=100000;
    shared_map synced tinymap?space=16m&entries=100000&sync;
    server {
        listen 127.0.0.1:$2;
        location = /plain  { shared_map_key plain  \$uri; return 200 "\$shared_map_incr"; }
        location = /synced { shared_map_key synced \$uri; return 200 "\$shared_map_incr"; }
        location = /write  { shared_map_key synced \$arg_k; return 200 "\$shared_map_incr"; }
        location /maps/ { shared_map_api; }
    }
}
CONF
    "$NGINX" -p "$WORK/$1/" -c "$WORK/$1/nginx.conf"
}
host a "$PORT"
host b "$((PORT + 1))"
sleep 0.5

rps() { wrk -t1 -c32 -d"${DURATION}s" "$1" | awk '/Requests\/sec/ { print $2 }'; }

plain=() synced=()
for _ in $(seq "$ROUNDS"); do
    plain+=("$(rps "http://127.0.0.1:$PORT/plain")")
    synced+=("$(rps "http://127.0.0.1:$PORT/synced")")
done
p=$(printf '%s\n' "${plain[@]}" | median)
s=$(printf '%s\n' "${synced[@]}" | median)
echo "counting, requests/s (median of $ROUNDS): unsynced $p, synced $s, ratio $(echo "scale=3; $s / $p" | bc)"
echo "  rounds: unsynced ${plain[*]}; synced ${synced[*]}"

applied() { curl -s "http://127.0.0.1:$((PORT + 1))/maps/synced?limit=0" | sed -n 's/.*"applied":\([0-9]*\).*/\1/p'; }
replicate() { # title, connections, extra lua
    cat > "$WORK/keys.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/write?k=k" .. (n % 50000))
end
$3
LUA
    local before after writes lag50 lag99
    before=$(applied)
    ( for _ in $(seq $((DURATION * 20))); do
        curl -s "http://127.0.0.1:$((PORT + 1))/maps/synced?limit=0" | sed -n 's/.*"lag_ms":\([0-9]*\).*/\1/p'
        echo
        sleep 0.05
      done > "$WORK/lag" ) &
    local sampler=$!
    writes=$(wrk -t1 -c"$2" -d"${DURATION}s" -s "$WORK/keys.lua" "http://127.0.0.1:$PORT" | awk '/Requests\/sec/ { print $2 }')
    sleep 1
    wait "$sampler"
    after=$(applied)
    sed -i '/^$/d' "$WORK/lag"
    lag50=$(sort -n "$WORK/lag" | awk '{ a[NR] = $1 } END { print a[int(NR * 0.5)] }')
    lag99=$(sort -n "$WORK/lag" | awk '{ a[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; print a[i] }')
    echo "replication, $1: host A took $writes writes/s to 50000 keys; host B applied $(( (after - before) / (DURATION + 1) )) changes/s; lag median ${lag50} ms, p99 ${lag99} ms"
}
replicate "unbounded" 10 ""
replicate "paced" 14 "delay = function() return 1 end"
