#!/usr/bin/env bash
# Runs several whole t/ suites side by side, JOBS at a time, each against its
# own nginx, port and servroot, with its output kept in build/suites/NAME.log
# and printed once it ends. A suite spends most of its time waiting on nginx and
# its sockets, so two at once take little more than one on a 2-core machine.
#
#   t/run-suites.sh JOBS NAME:NGINX:MODULE:PORT:MODE ...      (MODE: normal or hup)
#
# Ports must be far enough apart for what a suite derives from its own (hosts on
# port + 10 + N and port + 100 + N, Redis on 16384 + port mod 1000, + 16).
set -euo pipefail
jobs=$1; shift
: "${PROVE:?PROVE is the prove command line (make sets it)}"
top=$(cd "$(dirname "$0")/.." && pwd)
logs=$top/build/suites
mkdir -p "$logs"

declare -A pid_of=()
failed=""
finish() { # name
    local name=$1 rc=0
    wait "${pid_of[$name]}" || rc=$?
    unset "pid_of[$name]"
    echo "==== t/ on $name: $(tail -1 "$logs/$name.log")"
    cat "$logs/$name.log"
    [ "$rc" = 0 ] || failed="$failed $name"
}

for spec in "$@"; do
    IFS=: read -r name nginx module port mode <<<"$spec"
    while [ "${#pid_of[@]}" -ge "$jobs" ]; do
        wait -n || true
        for n in "${!pid_of[@]}"; do
            kill -0 "${pid_of[$n]}" 2>/dev/null || finish "$n"
        done
    done
    rm -rf "$top/t/servroot-$name"
    echo "t/ on $name: port $port, $mode mode, started $(date -u +%T)"
    hup=""; [ "$mode" = hup ] && hup=1
    (
        cd "$top"
        start=$(date +%s)
        TEST_NGINX_USE_HUP=$hup TEST_NGINX_BINARY=$nginx TEST_NGINX_MODULE=$module \
        TEST_NGINX_SERVER_PORT=$port TEST_NGINX_SERVROOT=$top/t/servroot-$name \
            $PROVE -r t/ >"$logs/$name.log" 2>&1 || rc=$?
        echo "$name: exit ${rc:-0} after $(($(date +%s) - start)) s" >>"$logs/$name.log"
        exit "${rc:-0}"
    ) &
    pid_of[$name]=$!
done
for n in "${!pid_of[@]}"; do finish "$n"; done

# CI keeps only the end of what it prints: repeat each failure there, with
# the assertion's diagnostics and prove's summary.
if [ -n "$failed" ]; then
    for n in $failed; do
        echo "==== failures on $n (build/suites/$n.log)"
        grep -E -A4 '^#   Failed test' "$logs/$n.log" | head -60 || true
        # A file that died, timed out or lost its plan fails with no assertion.
        grep -E -B3 'Dubious|died|Parse errors|Bad plan|No subtests run|TIMEOUT|Tests out of sequence' \
            "$logs/$n.log" | head -40 || true
        sed -n '/^Test Summary Report/,$p' "$logs/$n.log"
    done
    echo "t/ failed on:$failed"
    exit 1
fi
echo "t/ passed on every nginx: $*" | sed 's/:[^ ]*//g'
