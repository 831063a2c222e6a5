# Sourced by every bench script: strict mode, the repository as the working
# directory, tool checks, and a work directory removed on exit after every
# nginx started under it (a pid file in WORK/logs or WORK/*/logs) is stopped.
# A script that starts more (a load generator, a Redis) defines
# `before_cleanup`, which runs first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[1]}")/.."

# need TOOL [PACKAGE]: stops with the package to install when TOOL is missing.
need() {
    command -v "$1" >/dev/null || { echo "$1 is needed: apt-get install ${2:-$1}"; exit 1; }
}

# workdir NAME: WORK=/tmp/shared-map-NAME.XXXXXX, cleaned up on exit.
workdir() {
    WORK=$(mktemp -d "/tmp/shared-map-$1.XXXXXX")
    trap cleanup EXIT
}

cleanup() {
    if declare -F before_cleanup >/dev/null; then before_cleanup || true; fi
    local p
    for p in "$WORK"/logs/nginx.pid "$WORK"/*/logs/nginx.pid; do
        [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
    done
    rm -rf "$WORK"
}

# median: the median of the numbers on standard input, one a line.
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# pinning: WORKERS (nginx's worker directives) and WRK (the load generator's
# command) for PINNED=1, one nginx worker on CPU 0 and wrk on CPU 1, or else
# 2 workers and wrk sharing the machine's cores.
pinning() {
    if [ "${PINNED:-0}" = 1 ]; then
        WORKERS="worker_processes 1; worker_cpu_affinity 1;"
        WRK="taskset -c 1 wrk"
    else
        WORKERS="worker_processes 2;"
        WRK="wrk"
    fi
}
