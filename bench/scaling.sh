#!/usr/bin/env bash
# Throughput as nginx's workers grow: bench/scaling.sh WORKERS... (default 1 2)
# runs nginx with each number of workers (one per CPU, pinned in order where the
# machine has that many CPUs) and loads it over loopback with wrk: /bare (return
# 200), /count (shared_map_count on one key per URI) and /incr
# ($shared_map_incr), each for DURATION seconds, ROUNDS times, the median kept.
# It reports requests per second and counted/bare for each worker count, and
# each worker count's throughput relative to the first one given, so that a
# machine with more cores reproduces the scaling figures:
#
#   bench/scaling.sh 1 2 4 8 16 32 64
#
# The load generator shares the machine: on N cores, workers + wrk threads
# above N measure the scheduler as much as nginx. WRK_THREADS (default: the
# worker count) and CONNS (default 32 per worker, at most 1024) bound the load;
# DURATION (5) and ROUNDS (3) bound the time. KEYS (1) is how many distinct
# URIs /count and /incr spread over: 1 is the hot-key case.
source "$(dirname "$0")/lib.sh"
need wrk
workdir scaling

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-8095}
KEYS=${KEYS:-1}
[ $# -gt 0 ] || set -- 1 2
CPUS=$(nproc)

cat > "$WORK/keys.lua" <<'LUA'
local n, i = tonumber(os.getenv("KEYS") or "1"), 0
function request()
    i = i % n + 1
    return wrk.format("GET", wrk.path .. (n > 1 and ("/" .. i) or ""))
end
LUA

start() { # workers
    local affinity=""
    [ "$1" -le "$CPUS" ] && affinity="worker_cpu_affinity auto;"
    mkdir -p "$WORK/logs"
    cat > "$WORK/nginx.conf" <<CONF
load_module $PWD/objs/ngx_http_shared_map_module.so;
worker_processes $1; $affinity
error_log logs/error.log; pid logs/nginx.pid;
events { worker_connections 4096; }
http { access_log off;
  shared_map counters tinymap?space=8m&entries=65536;
  server { listen 127.0.0.1:$PORT reuseport backlog=4096;
    location /bare { return 200 "ok"; }
    location /incr { shared_map_key counters \$uri; return 200 \$shared_map_incr; }
    location /count { shared_map_count counters \$uri; return 200 "ok"; }
  } }
CONF
    objs/nginx -p "$WORK/" -c "$WORK/nginx.conf"
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return
        sleep 0.1
    done
    echo "nginx did not start: $(tail -3 "$WORK/logs/error.log")"; exit 1
}

stop() {
    kill -QUIT "$(cat "$WORK/logs/nginx.pid")"
    for _ in $(seq 50); do [ -f "$WORK/logs/nginx.pid" ] || return 0; sleep 0.1; done
}

rps() { # workers path
    local threads=${WRK_THREADS:-$1} conns=${CONNS:-$((32 * $1))}
    [ "$conns" -gt 1024 ] && conns=1024
    [ "$conns" -lt "$threads" ] && conns=$threads
    KEYS=$KEYS timeout $((DURATION + 30)) wrk -t"$threads" -c"$conns" -d"${DURATION}s" -s "$WORK/keys.lua" \
        "http://127.0.0.1:$PORT$2" | awk '/Requests\/sec/ { print $2 }'
}


echo "# nginx scaling ($(date -u +%Y-%m-%d), $CPUS CPUs, $(objs/nginx -v 2>&1 | sed 's/.*\///'), wrk ${DURATION}s x $ROUNDS, KEYS=$KEYS)"
echo
echo "| workers | bare req/s | shared_map_count req/s | count/bare | \$shared_map_incr req/s | incr/bare | bare vs first | count vs first |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
first_bare="" first_count=""
for n in "$@"; do
    start "$n"
    declare -A got=([bare]="" [count]="" [incr]="")
    for _ in $(seq "$ROUNDS"); do
        for p in bare count incr; do got[$p]+="$(rps "$n" "/$p") "; done
    done
    stop
    bare=$(echo "${got[bare]}" | tr ' ' '\n' | grep . | median)
    count=$(echo "${got[count]}" | tr ' ' '\n' | grep . | median)
    incr=$(echo "${got[incr]}" | tr ' ' '\n' | grep . | median)
    [ -z "$first_bare" ] && first_bare=$bare first_count=$count
    printf '| %d | %.0f | %.0f | %.3f | %.0f | %.3f | %.2f | %.2f |\n' "$n" "$bare" "$count" \
        "$(echo "$count / $bare" | bc -l)" "$incr" "$(echo "$incr / $bare" | bc -l)" \
        "$(echo "$bare / $first_bare" | bc -l)" "$(echo "$count / $first_count" | bc -l)"
done
