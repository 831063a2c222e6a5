#!/usr/bin/env bash
# Latency of counting into a large map with `state=`: p99 of `$shared_map_incr`
# on one key of a tinymap holding 600,000 entries (loaded from a state file, so
# the map is saved every second while it changes), first with nothing else
# going on, then while clients list the whole map (JSON, limit=1000000) and
# scrape it (Prometheus) back to back. Also checks that a full listing returns
# every entry exactly once, and prints the map's lock statistics.
#
# Loopback only; bounded: 2 x DURATION seconds of wrk.
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
PORT=${PORT:-8096}
N=${N:-600000}
LOADER=""
before_cleanup() {
    [ -n "$LOADER" ] && kill "$LOADER" 2>/dev/null
    [ -f "$WORK/logs/nginx.pid" ] && kill "$(cat "$WORK/logs/nginx.pid")" 2>/dev/null
    sleep 0.5
}
need wrk
workdir p99

cargo build -q --release -p shared-map-engine --example make_state
target/release/examples/make_state "$N" > "$WORK/big.state"
mkdir -p "$WORK/logs"
cat > "$WORK/nginx.conf" <<CONF
load_module $PWD/objs/ngx_http_shared_map_module.so;
worker_processes 2; error_log logs/error.log notice; pid logs/nginx.pid;
events { worker_connections 1024; }
http { access_log off;
  shared_map big tinymap?space=64m&entries=700000&state=$WORK/big.state;
  server { listen 127.0.0.1:$PORT;
    location = /c { shared_map_key big \$uri; return 200 \$shared_map_incr; }
    location = /bare { return 200 "ok"; }
    location /maps/ { shared_map_api; }
  } }
CONF
objs/nginx -p "$WORK/" -c "$WORK/nginx.conf"
sleep 1
URL="http://127.0.0.1:$PORT"

p99() { wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$URL${1:-/c}" \
        | awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
                             else if (v ~ /ms$/) { sub(/ms$/, "", v) }
                             else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
                             printf "%.2f", v }'; }

bare=$(p99 /bare)
idle=$(p99)

# Listings and scrapes back to back, in the background.
(
    while :; do
        curl -s -o /dev/null "$URL/maps/big?limit=1000000"
        echo json >> "$WORK/listed"
        curl -s -o /dev/null "$URL/maps/big?format=prometheus"
        echo prometheus >> "$WORK/listed"
    done
) &
LOADER=$!
loaded=$(p99)
kill "$LOADER"; wait "$LOADER" 2>/dev/null || true; LOADER=""
lists=$(grep -c json "$WORK/listed" || true)
scrapes=$(grep -c prometheus "$WORK/listed" || true)

once=$(curl -s "$URL/maps/big?limit=1000000" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
keys = [e["key"] for e in doc["entries"]]
k = [x for x in keys if x.startswith("/k/")]
more = doc["more"]
print(f"{len(set(k))} of the {sys.argv[1]} loaded entries, {len(keys) - len(set(keys))} listed twice, more={more}")
' "$N")
lock=$(curl -s "$URL/maps/" | python3 -c '
import json, sys
m = json.load(sys.stdin)["maps"][0]["stats"]
l = m["lock"]
waits, waited, hold, n = l["waits"], l["wait_us"] / 1000, l["hold_max_us"], m["entries"]
print(f"{waits} waits, {waited:.1f} ms waited in all, longest hold {hold} us ({n} entries)")
')

echo "# p99 of counting into a $N-entry map with state= ($(date -u +%Y-%m-%d), wrk -t1 -c$CONNS -d${DURATION}s --latency, 2 workers, loopback)"
echo
echo "| while | p99 of \$shared_map_incr |"
echo "| --- | --- |"
echo "| idle, a bare \`return 200\` of the same nginx (the machine's own noise) | $bare ms |"
echo "| idle (saves only) | $idle ms |"
echo "| listed ($lists full JSON listings) and scraped ($scrapes full Prometheus scrapes) | $loaded ms |"
echo
echo "A full listing afterwards: $once."
echo "Lock statistics: $lock."
