#!/usr/bin/env bash
# make test-docker: builds docker/Dockerfile.test and runs the t/ suite inside
# that image under Test::Nginx, then builds docker/Dockerfile (the nginx image
# plus the module) and checks that the image's own nginx, with its own
# configuration, loads the module and counts. Any failure fails the script.
#
# Engines: `docker` where a Docker engine answers; otherwise podman builds
# (`podman build --isolation=chroot`) and buildah runs the containers
# (`buildah from` + `buildah run --isolation chroot`: no network namespace, so
# the ports below are the host's; `podman run` needs setrlimit, which some
# sandboxes refuse).
#
# Base images are build arguments of both Dockerfiles. DOCKER_BASES chooses them:
#   official  rust:1-bookworm, rust:1-slim-bookworm and nginx:stable, pulled
#   local     made here, for machines that cannot pull (nothing but Debian's
#             archive and crates.io reachable): a Debian base by mmdebstrap, a
#             Rust image from it plus the host's toolchain (`rustc --print
#             sysroot`), and a stand-in for the official nginx image built from
#             the release tarball NGINX_TARBALL (docker/local/). Each is made once
#             and kept: an existing image is not made again.
#   auto      official when nginx:stable is present or can be pulled, else local
#             (the default)
#
# Variables (all optional):
#   DOCKER_TESTS    the t/ files run inside the test image (default: t/, all)
#   TEST_PORT       the suite's server port (default 1984; t/ derives others
#                   from it); the next two stand for the nginx image's 8080 and 80
#   TEST_NGINX_LIB  a Test::Nginx lib/ directory to put into the test image
#                   (default: ../shared/vendor/test-nginx/lib when present,
#                   else the image installs Test::Nginx from CPAN with cpanm)
#   NGINX_TARBALL   the nginx release tarball for local bases (default: the
#                   vendored nginx-1.30.4, what nginx:stable ships)
#   RUST_IMAGE, RUST_SLIM_IMAGE, NGINX_IMAGE   override the base images
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bases=${DOCKER_BASES:-auto}
tests=${DOCKER_TESTS:-t/}
port=${TEST_PORT:-1984}
vendor=$repo/../shared/vendor
test_nginx_lib=${TEST_NGINX_LIB:-}
if [ -z "$test_nginx_lib" ] && [ -f "$vendor/test-nginx/lib/Test/Nginx/Socket.pm" ]; then
    test_nginx_lib=$vendor/test-nginx/lib
fi
nginx_tarball=${NGINX_TARBALL:-$vendor/nginx/nginx-1.30.4.tar.gz}
stage=build/docker-context      # what the repository's build context takes from elsewhere
work=$repo/build/docker-bases   # the local bases' own build contexts
base_repo=localhost/shared-map-base

log() { printf '== test-docker %s: %s\n' "$(date +%T)" "$*"; }
die() { printf 'test-docker: %s\n' "$*" >&2; exit 1; }

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
elif command -v podman >/dev/null && command -v buildah >/dev/null; then
    engine=podman
else
    die "needs docker, or podman and buildah (apt-get install podman buildah)"
fi
log "engine: $engine"

image_exists() { # image
    if [ $engine = docker ]; then docker image inspect "$1" >/dev/null 2>&1
    else podman image exists "$1"; fi
}

build() { # dockerfile context tag [build options...]
    local file=$1 context=$2 tag=$3
    shift 3
    local ignore=()
    [ -f "$file.dockerignore" ] && ignore=(--ignorefile "$file.dockerignore")
    if [ $engine = docker ]; then
        # BuildKit reads FILE.dockerignore itself and has RUN --mount.
        DOCKER_BUILDKIT=1 docker build -f "$file" -t "$tag" "$@" "$context"
    else
        podman build --isolation=chroot --layers "${ignore[@]}" -f "$file" -t "$tag" "$@" "$context"
    fi
}

# The containers get CAP_SYS_PTRACE: t/ reads other users' sockets (ss -p) and
# attaches gdb to nginx's workers, which run as nobody.
run() { # image command... (the command's exit status is returned)
    local image=$1
    shift
    if [ $engine = docker ]; then
        docker run --rm --cap-add SYS_PTRACE "$image" "$@"
    else
        local ctr rc=0
        ctr=$(buildah from --pull=never "$image")
        buildah run --isolation chroot --cap-add CAP_SYS_PTRACE "$ctr" -- sh -c "$reap" sh "$@" || rc=$?
        buildah rm "$ctr" >/dev/null
        return $rc
    fi
}

# A chroot container has no PID namespace: a daemon that a failed test leaves
# running (nginx and its workers, redis-server) outlives the command, holds its
# ports, and keeps `buildah run` waiting on its output. So the command runs
# under this wrapper, which then ends, by their ids, the processes whose root
# directory is the container's own (the same device and inode as its `/`;
# every other process's root is another directory), except itself and buildah's
# process that started it.
# shellcheck disable=SC2016 # expanded by the container's shell
reap='"$@"; rc=$?
me=$(stat -c %d:%i /)
for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    case $pid in $$|$PPID) continue ;; esac
    [ "$(stat -L -c %d:%i "$p/root/" 2>/dev/null)" = "$me" ] || continue
    echo "test-docker: ending pid $pid, left running: $(tr "\0" " " < "$p/cmdline" 2>/dev/null)"
    kill -KILL "$pid" 2>/dev/null || true
done
exit $rc'

# --- base images ---------------------------------------------------------------

debian_base() { # makes $base_repo/debian:bookworm unless it exists
    debian_image=$base_repo/debian:bookworm
    image_exists "$debian_image" && return 0
    command -v mmdebstrap >/dev/null || die "local bases need mmdebstrap (apt-get install mmdebstrap)"
    log "making $debian_image with mmdebstrap"
    mkdir -p "$work"
    rm -f "$work/debian.tar"
    mmdebstrap --variant=minbase bookworm "$work/debian.tar"
    $engine import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' "$work/debian.tar" "$debian_image"
    rm -f "$work/debian.tar"
}

rust_base() { # makes $base_repo/rust:VERSION-bookworm from the host's toolchain unless it exists
    command -v rustc >/dev/null || die "local bases need the host's Rust toolchain (rustc)"
    local version sysroot ctx
    version=$(rustc --version | cut -d' ' -f2)
    rust_image=$base_repo/rust:$version-bookworm
    image_exists "$rust_image" && return 0
    sysroot=$(rustc --print sysroot)
    ctx=$work/rust
    log "making $rust_image from $sysroot"
    rm -rf "$ctx"
    mkdir -p "$ctx/toolchain"
    # bin/ and lib/ are the toolchain (share/ is documentation); hard links where
    # the file system allows, so staging costs no copy.
    cp -al "$sysroot/bin" "$sysroot/lib" "$ctx/toolchain/" 2>/dev/null \
        || cp -a "$sysroot/bin" "$sysroot/lib" "$ctx/toolchain/"
    build docker/local/rust.Dockerfile "$ctx" "$rust_image" \
        --build-arg DEBIAN_IMAGE="$debian_image" --build-arg TOOLCHAIN="$(basename "$sysroot")"
    rm -rf "$ctx"
}

nginx_base() { # makes $base_repo/nginx:VERSION from NGINX_TARBALL unless it exists
    [ -f "$nginx_tarball" ] || die "no nginx release tarball at $nginx_tarball (set NGINX_TARBALL)"
    local name ctx
    name=$(basename "$nginx_tarball" .tar.gz)
    nginx_version=${name#nginx-}
    nginx_image=$base_repo/nginx:$nginx_version
    image_exists "$nginx_image" && return 0
    ctx=$work/nginx
    log "making $nginx_image, a stand-in for the official image, from $nginx_tarball"
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp "$nginx_tarball" docker/local/nginx.conf docker/local/default.conf "$ctx/"
    build docker/local/nginx.Dockerfile "$ctx" "$nginx_image" \
        --build-arg DEBIAN_IMAGE="$debian_image" --build-arg NGINX_VERSION="$nginx_version"
    rm -rf "$ctx"
}

if [ "$bases" = auto ]; then
    if image_exists docker.io/library/nginx:stable \
        || $engine pull -q docker.io/library/nginx:stable >/dev/null 2>&1; then
        bases=official
    else
        bases=local
        log "nginx:stable cannot be pulled: making the bases here"
    fi
fi
rm -rf "$stage"
mkdir -p "$stage"
nginx_source=
case $bases in
    official)
        # Fully qualified: podman may have no registry to search short names in.
        rust_image=${RUST_IMAGE:-docker.io/library/rust:1-bookworm}
        rust_slim_image=${RUST_SLIM_IMAGE:-docker.io/library/rust:1-slim-bookworm}
        nginx_image=${NGINX_IMAGE:-docker.io/library/nginx:stable}
        ;;
    local)
        debian_base
        if [ -n "${RUST_IMAGE:-}" ]; then rust_image=$RUST_IMAGE; else rust_base; fi
        rust_slim_image=${RUST_SLIM_IMAGE:-$rust_image}
        if [ -n "${NGINX_IMAGE:-}" ]; then nginx_image=$NGINX_IMAGE; else
            nginx_base
            # The stand-in's source goes in through the build context:
            # build-module.sh cannot download it here.
            cp "$nginx_tarball" "$stage/"
            nginx_source=$stage/$(basename "$nginx_tarball")
        fi
        ;;
    *) die "DOCKER_BASES is auto, official or local, not \"$bases\"" ;;
esac
log "bases: $rust_image, $rust_slim_image, $nginx_image"

# With local bases the images' cargo is the host's own: the crates go in through
# the build context, fetched here, and cargo in the images runs offline (here,
# crates.io is reached only through a proxy that the images do not trust).
cargo_seed=
if [ "$bases" = local ]; then
    log "fetching the crates for the images (cargo fetch --locked)"
    cargo fetch --locked --quiet
    registry=${CARGO_HOME:-$HOME/.cargo}/registry
    mkdir -p "$stage/cargo-seed/registry"
    cp -al "$registry/index" "$registry/cache" "$stage/cargo-seed/registry/" 2>/dev/null \
        || cp -a "$registry/index" "$registry/cache" "$stage/cargo-seed/registry/"
    cargo_seed=$stage/cargo-seed
fi

# --- the t/ suite inside docker/Dockerfile.test ----------------------------------

test_nginx=cpan
if [ -n "$test_nginx_lib" ]; then
    [ -f "$test_nginx_lib/Test/Nginx/Socket.pm" ] || die "$test_nginx_lib has no Test/Nginx/Socket.pm"
    cp -R "$test_nginx_lib" "$stage/test-nginx-lib"
    test_nginx=$stage/test-nginx-lib
fi
log "building docker/Dockerfile.test (Test::Nginx: $test_nginx)"
build docker/Dockerfile.test . shared-map-test \
    --build-arg RUST_IMAGE="$rust_image" --build-arg TEST_NGINX="$test_nginx" \
    --build-arg CARGO_SEED="$cargo_seed"

log "running $tests inside shared-map-test (port $port)"
# shellcheck disable=SC2086 # DOCKER_TESTS is a list of files
run shared-map-test env TEST_NGINX_SERVER_PORT="$port" prove --timer -r $tests \
    || die "the t/ suite failed inside shared-map-test"

# --- docker/Dockerfile: the nginx image with the module counts -------------------

log "building docker/Dockerfile on $nginx_image"
build docker/Dockerfile . shared-map-nginx \
    --build-arg NGINX_IMAGE="$nginx_image" --build-arg RUST_IMAGE="$rust_slim_image" \
    --build-arg NGINX_SOURCE="$nginx_source" --build-arg CARGO_SEED="$cargo_seed"

log "checking that shared-map-nginx counts (ports $((port + 1)), $((port + 2)))"
# Inside the image, with its own nginx and configuration; only the ports move,
# since buildah's containers share the host's network.
# shellcheck disable=SC2016 # expanded by the container's shell
run shared-map-nginx sh -euc '
    p=$1
    sed -i "s/listen 8080;/listen $p;/" /etc/nginx/conf.d/shared-map.conf
    sed -i "s/listen\( *\[::\]:\)\{0,1\} *80;/listen \1$(($p + 1));/" /etc/nginx/conf.d/default.conf
    nginx -V 2>&1 | head -1
    nginx -g "daemon off;" >/dev/null &    # its access log is /dev/stdout
    pid=$!
    trap "kill -QUIT $pid; wait $pid" EXIT
    for i in $(seq 50); do curl -fs "http://127.0.0.1:$p/" >/dev/null && break; sleep 0.2; done
    curl -fsS "http://127.0.0.1:$p/hello"
    curl -fsS "http://127.0.0.1:$p/hello"
    got=$(curl -fsS "http://127.0.0.1:$p/count?uri=/hello")
    echo "$got"
    [ "$got" = "/hello: 2" ] || { echo "expected /hello: 2"; exit 1; }
    for i in $(seq 40); do curl -fsS -o /dev/null "http://127.0.0.1:$p/hello"; done
    workers=$(for i in $(seq 40); do curl -fsS "http://127.0.0.1:$p/other"; done | sort -u | wc -l)
    got=$(curl -fsS "http://127.0.0.1:$p/count?uri=/hello")
    echo "$got (40 more); /other answered by $workers worker(s)"
    [ "$got" = "/hello: 42" ] || { echo "expected /hello: 42"; exit 1; }
    curl -fsS "http://127.0.0.1:$p/maps/uri_access_counters" | grep -q "\"key\":\"/other\",\"type\":\"long\",\"value\":40" \
        || { echo "the API does not list /other at 40"; exit 1; }
    echo "shared-map-nginx counts"
' sh "$((port + 1))" || die "the nginx image does not count"

log "passed: $tests inside shared-map-test, and shared-map-nginx counts"
