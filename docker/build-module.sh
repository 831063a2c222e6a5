#!/bin/sh
# Builds ngx_http_shared_map_module.so for an installed nginx, through nginx's own
# build and the repository's `config`: the same nginx version's source, configured
# with the arguments that nginx was built with (`nginx -V`), then `make modules`.
# A module built so has the nginx's version and build signature, so it loads.
#
#   docker/build-module.sh [--nginx BINARY] [--source DIR | --tarball FILE] [--out DIR] [--work DIR]
#
#   --nginx    the nginx to build for (default: nginx on PATH)
#   --source   that version's source tree (a release tarball unpacked, or Debian's
#              /usr/share/nginx/src from nginx-dev)
#   --tarball  that version's release tarball (nginx-VERSION.tar.gz); without
#              --source or --tarball it is downloaded from nginx.org
#              (docker/Dockerfile does that unless given NGINX_SOURCE)
#   --out      where the .so goes (default: objs/)
#   --work     a scratch directory for the configured copy of the source
#              (default: build/module-<version>); kept, so a rebuild is quick
#
# Dropped from nginx's arguments: third-party modules (--add-module,
# --add-dynamic-module: their sources are not here) and nginx's own dynamic
# modules (--with-*=dynamic: other .so files, which need their libraries'
# headers). Neither is part of the module signature that load_module checks.
# --with-compat is added if missing, as nginx requires for modules built apart.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
nginx=nginx
source=
tarball=
out=$repo/objs
work=

while [ $# -gt 0 ]; do
    case $1 in
        --nginx) nginx=$2; shift 2 ;;
        --source) source=$2; shift 2 ;;
        --tarball) tarball=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        *) echo "usage: $0 [--nginx BINARY] [--source DIR | --tarball FILE] [--out DIR] [--work DIR]" >&2; exit 2 ;;
    esac
done

info=$("$nginx" -V 2>&1)
version=$(printf '%s\n' "$info" | sed -n 's|^nginx version: [^/]*/\([0-9.]*\).*|\1|p')
args=$(printf '%s\n' "$info" | sed -n 's|^configure arguments: ||p')
[ -n "$version" ] || { echo "$0: cannot read the version from \`$nginx -V\`" >&2; exit 1; }
echo "building ngx_http_shared_map_module for nginx $version ($nginx)"

work=${work:-$repo/build/module-$version}
mkdir -p "$work" "$out"
work=$(cd "$work" && pwd)
out=$(cd "$out" && pwd)

if [ -z "$source" ]; then
    if [ -z "$tarball" ]; then
        tarball=$work/nginx-$version.tar.gz
        [ -f "$tarball" ] || curl -fsSL -o "$tarball" "https://nginx.org/download/nginx-$version.tar.gz"
    fi
    [ -f "$tarball" ] || { echo "$0: no tarball at $tarball" >&2; exit 1; }
    tar -xzf "$tarball" -C "$work"
    source=$work/nginx-$version
fi
[ -x "$source/configure" ] || { echo "$0: $source has no configure script" >&2; exit 1; }
src_version=$(sed -n 's/^#define NGINX_VERSION *"\([^"]*\)".*/\1/p' "$source/src/core/nginx.h")
if [ "$src_version" != "$version" ]; then
    echo "$0: $source is nginx $src_version, but $nginx is $version: the module would not load" >&2
    exit 1
fi

# nginx -V prints the arguments as the shell saw them (quoted --with-cc-opt='...'),
# so the shell reads them back the same way.
eval "set -- $args"
keep_args=
compat=no
for a in "$@"; do
    case $a in
        --add-module=* | --add-dynamic-module=* | --with-*=dynamic) continue ;;
        --with-compat) compat=yes ;;
    esac
    keep_args="$keep_args '$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'"
done
[ $compat = yes ] || keep_args="$keep_args --with-compat"
keep_args="$keep_args --add-dynamic-module='$repo'"

# A configured copy, so the source tree given is never written to; configured
# again only when the arguments change (cargo's own output inside it is kept,
# so a rebuild compiles only what changed).
tree=$work/tree
stamp="nginx $version:$keep_args"
if [ ! -f "$tree/objs/Makefile" ] || [ "$(cat "$work/configured" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$tree" "$work/configured"
    cp -r "$source" "$tree"
    (cd "$tree" && eval "./configure $keep_args") > "$work/configure.log" 2>&1 || {
        tail -20 "$work/configure.log" >&2
        echo "$0: configure failed; the whole log is $work/configure.log" >&2
        exit 1
    }
    printf '%s' "$stamp" > "$work/configured"
fi

cd "$tree"
make -f objs/Makefile modules
cp objs/ngx_http_shared_map_module.so "$out/ngx_http_shared_map_module.so"
echo "built $out/ngx_http_shared_map_module.so for nginx $version"
