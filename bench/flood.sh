#!/usr/bin/env bash
# Hash flooding: 11,000 URIs crafted offline so that their unkeyed MurmurHash3
# (seed 0, nginx-clojure's hash) falls into one bucket of a 16,384-bucket tinymap
# (entries=12000), counted with `shared_map_count`, against 11,000 ordinary URIs
# in a map of the same size. Rounds interleave flooded and ordinary in one run;
# the figure is the ratio of their median requests per second.
#
# Loopback only; bounded: ROUNDS x 2 x DURATION seconds.
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
PORT=${PORT:-8097}
N=${N:-11000}
need wrk
workdir flood

cargo build -q --release -p shared-map-engine --example flood_keys
target/release/examples/flood_keys "$N" 16384 > "$WORK/flooded.txt"
target/release/examples/flood_keys "$N" 16384 ordinary > "$WORK/ordinary.txt"

# wrk requests the URIs of a file in turn.
cat > "$WORK/uris.lua" <<'LUA'
local uris, i = {}, 0
function init(args)
    for line in io.lines(args[1]) do uris[#uris + 1] = line end
    i = math.random(#uris)
end
function request()
    i = i % #uris + 1
    return wrk.format("GET", uris[i])
end
LUA

mkdir -p "$WORK/logs"
cat > "$WORK/nginx.conf" <<CONF
load_module $PWD/objs/ngx_http_shared_map_module.so;
worker_processes 2; error_log logs/error.log; pid logs/nginx.pid;
events { worker_connections 1024; }
http { access_log off;
  shared_map f tinymap?space=4m&entries=12000;
  shared_map o tinymap?space=4m&entries=12000;
  server { listen 127.0.0.1:$PORT;
    location /f/ { shared_map_count f \$uri; return 200 "ok"; }
    location /o/ { shared_map_count o \$uri; return 200 "ok"; }
    location /maps/ { shared_map_api; }
  } }
CONF
objs/nginx -p "$WORK/" -c "$WORK/nginx.conf"
sleep 0.5

rps() { wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$WORK/uris.lua" "http://127.0.0.1:$PORT" -- "$1" \
        | awk '/Requests\/sec/ { print $2 }'; }

flooded="" ordinary=""
for _ in $(seq "$ROUNDS"); do
    flooded+="$(rps "$WORK/flooded.txt") "
    ordinary+="$(rps "$WORK/ordinary.txt") "
done
f=$(echo "$flooded" | tr ' ' '\n' | grep . | median)
o=$(echo "$ordinary" | tr ' ' '\n' | grep . | median)
entries() { curl -s "http://127.0.0.1:$PORT/maps/$1?limit=0" | sed 's/.*"entries":\([0-9]*\),.*/\1/'; }
echo "# Hash flooding ($(date -u +%Y-%m-%d), wrk -t1 -c$CONNS -d${DURATION}s, $ROUNDS interleaved rounds, 2 workers, loopback)"
echo
echo "| keys | requests/s (median) | entries counted |"
echo "| --- | --- | --- |"
printf '| %s ordinary URIs | %.0f | %s |\n' "$N" "$o" "$(entries o)"
printf '| %s URIs colliding under MurmurHash3 | %.0f | %s |\n' "$N" "$f" "$(entries f)"
echo
printf 'flooded / ordinary: **%.2f**\n' "$(echo "$f / $o" | bc -l)"
