#!/usr/bin/env bash
# Requests per second of a lookup in a prefix map holding 255 key lengths and
# in an ip map holding 128 IPv6 range lengths, as ratios to the same lookup in
# an exact map, measured in one run with rounds interleaved to cancel drift.
#
# The worst case for matching: the lookup key (a 300-byte URI, an IPv6
# address) is longer than every stored length, and only the shortest stored
# key (`/`, `::/0`) holds it, so every stored length is a candidate.
#
# PINNED=1 runs one nginx worker on CPU 0 and wrk on CPU 1.
# Loopback only; bounded: ROUNDS x 5 locations x DURATION seconds.
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
PORT=${PORT:-8098}
need wrk
need curl
need python3
workdir matching
pinning
ADDR=2001:db8:1234:5678:9abc:def0:1234:5678
LONG=$(printf 'a%.0s' $(seq 297))

mkdir -p "$WORK/logs"
cat > "$WORK/nginx.conf" <<EOF
load_module $PWD/objs/ngx_http_shared_map_module.so;
$WORKERS error_log logs/error.log; pid logs/nginx.pid;
events { worker_connections 1024; }
http { access_log off;
  shared_map exact  hashmap?space=1m;
  shared_map prefix hashmap?space=1m&match=prefix;
  shared_map ips    hashmap?space=1m&match=ip;
  shared_map_var \$uri \$e map=exact;
  shared_map_var \$uri \$p map=prefix;
  shared_map_var \$http_x_addr \$ea map=exact;
  shared_map_var \$http_x_addr \$ip map=ips;
  server { listen 127.0.0.1:$PORT;
    location /maps/ { allow 127.0.0.1; deny all; shared_map_api; }
    location = /bare { return 200 "ok"; }
    location /e/ { return 200 \$e; }
    location /p/ { return 200 \$p; }
    location = /ea { return 200 \$ea; }
    location = /ip { return 200 \$ip; }
  } }
EOF
"$PWD/objs/nginx" -p "$WORK/" -c "$WORK/nginx.conf"
sleep 0.5

put() { # map key
    curl -sf -o /dev/null -X PUT --data-binary v "http://127.0.0.1:$PORT/maps/$1?key=$2"
}
put exact "/e/$LONG"
put exact "$ADDR"
# Prefix keys of every length 1..255: `/`, then keys that prefix no lookup.
put prefix /
for n in $(seq 2 255); do put prefix "/q$(printf 'b%.0s' $(seq $((n - 2))))"; done
# Ranges of every length 0..127: `::/0`, then for each length L the range of
# length L that differs from ADDR in its last bit, so holds no lookup.
python3 - "$ADDR" <<'EOF' > "$WORK/ranges"
import ipaddress, sys
a = int(ipaddress.IPv6Address(sys.argv[1]))
print("::/0")
for n in range(1, 128):
    net = (a ^ (1 << (128 - n))) >> (128 - n) << (128 - n)
    print(f"{ipaddress.IPv6Address(net)}/{n}")
EOF
while read -r r; do put ips "$r"; done < "$WORK/ranges"
curl -sf "http://127.0.0.1:$PORT/p/$LONG" | grep -qx v
curl -sf -H "X-Addr: $ADDR" "http://127.0.0.1:$PORT/ip" | grep -qx v

rps() { # path
    $WRK -t1 -c"$CONNS" -d"${DURATION}s" -H "X-Addr: $ADDR" "http://127.0.0.1:$PORT$1" | awk '/Requests\/sec/ { print $2 }'
}

labels=("bare return 200" "exact, 300-byte URI" "prefix, 255 lengths" "exact, IPv6 address" "ip, 128 IPv6 lengths")
paths=(/bare "/e/$LONG" "/p/$LONG" /ea /ip)
declare -A results
for r in $(seq "$ROUNDS"); do
    for i in "${!labels[@]}"; do
        results[$i]+="$(rps "${paths[$i]}") "
    done
done
m() { echo "${results[$1]}" | tr ' ' '\n' | grep . | median; }
echo "# matching lookups ($(date -u +%Y-%m-%d), wrk -t1 -c$CONNS -d${DURATION}s, $WORKERS median of $ROUNDS)"
echo
echo "| location | requests/s | ratio to its exact lookup |"
echo "| --- | --- | --- |"
printf '| %s | %.0f | |\n' "${labels[0]}" "$(m 0)"
printf '| %s | %.0f | |\n' "${labels[1]}" "$(m 1)"
printf '| %s | %.0f | %.3f |\n' "${labels[2]}" "$(m 2)" "$(echo "$(m 2) / $(m 1)" | bc -l)"
printf '| %s | %.0f | |\n' "${labels[3]}" "$(m 3)"
printf '| %s | %.0f | %.3f |\n' "${labels[4]}" "$(m 4)" "$(echo "$(m 4) / $(m 3)" | bc -l)"
