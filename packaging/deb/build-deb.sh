#!/bin/sh
# Packs libnginx-mod-http-shared-map for the installed Debian nginx with dpkg-deb,
# laid out as Debian's own libnginx-mod-* packages are:
#   /usr/lib/nginx/modules/ngx_http_shared_map_module.so
#   /usr/share/nginx/modules-available/mod-http-shared-map.conf (its load_module line)
#   /etc/nginx/modules-enabled/50-mod-http-shared-map.conf, a link the maintainer
#   scripts make and remove
# and depending on the nginx ABI that the installed nginx provides
# (nginx-abi-VERSION-REVISION), so apt refuses it beside any other nginx build.
#
#   packaging/deb/build-deb.sh MODULE.so OUTDIR
#
# MODULE.so must be built for this nginx (docker/build-module.sh does that).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
so=$1
outdir=$2

# The ABI the installed nginx provides: the nginx package in Debian 12 provides it,
# nginx-core in some releases; nginx-dev records the same name for dh_nginx.
abi=$(dpkg-query -W -f='${Provides}\n' nginx nginx-core 2>/dev/null \
      | tr ',' '\n' | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p' | head -1)
if [ -z "$abi" ] && [ -f /usr/share/nginx/src/debian/libnginx-mod.abisubstvars ]; then
    abi=$(sed -n 's/^nginx:abi=//p' /usr/share/nginx/src/debian/libnginx-mod.abisubstvars)
fi
[ -n "$abi" ] || { echo "$0: no installed nginx provides an nginx-abi-* (apt-get install nginx-core)" >&2; exit 1; }

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")-1
arch=$(dpkg --print-architecture)
# The newest glibc symbol version the module needs.
glibc=$(objdump -T "$so" | sed -n 's/.*GLIBC_\([0-9][0-9.]*\).*/\1/p' | sort -V | tail -1)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"    # the package's root directory; mktemp makes it 0700
install -D -m 644 "$so" "$stage/usr/lib/nginx/modules/ngx_http_shared_map_module.so"
# Without debug information, as Debian's own module packages ship it.
strip --strip-debug "$stage/usr/lib/nginx/modules/ngx_http_shared_map_module.so"
install -D -m 644 "$here/mod-http-shared-map.conf" \
    "$stage/usr/share/nginx/modules-available/mod-http-shared-map.conf"
install -D -m 644 "$repo/README.md" "$stage/usr/share/doc/libnginx-mod-http-shared-map/README.md"
install -D -m 644 "$repo/CHANGELOG.md" "$stage/usr/share/doc/libnginx-mod-http-shared-map/changelog"
gzip -9n "$stage/usr/share/doc/libnginx-mod-http-shared-map/changelog"
cat > "$stage/usr/share/doc/libnginx-mod-http-shared-map/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ngx_http_shared_map

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
install -d "$stage/DEBIAN"
install -m 755 "$here/postinst" "$here/prerm" "$here/postrm" "$stage/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: libnginx-mod-http-shared-map
Version: $version
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-ngx_http_shared_map developers <root@localhost>}
Installed-Size: $size
Depends: $abi, libc6 (>= ${glibc:-2.17})
Recommends: nginx
Section: httpd
Priority: optional
Description: nginx module: maps shared by every worker in shared memory
 ngx_http_shared_map keeps counters and values with a time to live in
 nginx's shared memory, the same for every worker: URI access counters,
 an HTTP API to read and write them, and a session store.
EOF

mkdir -p "$outdir"
deb=$outdir/libnginx-mod-http-shared-map_${version}_$arch.deb
dpkg-deb --root-owner-group --build "$stage" "$deb"
echo "built $deb (Depends: $abi)"
