#!/usr/bin/env bash
# make deb: the Debian package libnginx-mod-http-oauth2 for Debian's nginx,
# laid out as Debian's own module packages (libnginx-mod-http-echo, ...):
#   /usr/lib/nginx/modules/ngx_http_oauth2_module.so
#   /usr/share/nginx/modules-available/mod-http-oauth2.conf   (load_module)
#   /etc/nginx/modules-enabled/50-mod-http-oauth2.conf        (link, made on
#                                                              install, gone on purge)
# depending on the exact nginx ABI the module was built against (read from
# nginx-dev, not typed here). Built with dpkg-deb: Debian's own tool, always
# there, and nothing to teach about nginx's modules-enabled convention.
#
#   scripts/make-deb.sh    -> target/deb/libnginx-mod-http-oauth2_VERSION_ARCH.deb
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
so=$("$top/scripts/debian-build.sh" | tail -1)

abi=$(sed -n 's/^nginx:abi=//p' /usr/share/nginx/src/debian/libnginx-mod.abisubstvars 2>/dev/null || true)
if [ -z "$abi" ]; then
    abi=$(dpkg-query -W -f='${Provides}' nginx | tr ',' '\n' | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p' | head -1)
fi
[ -n "$abi" ] || { echo "cannot tell the nginx ABI (nginx-dev's libnginx-mod.abisubstvars)" >&2; exit 1; }

name=libnginx-mod-http-oauth2
upstream=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)
version="$upstream-1"
arch=$(dpkg --print-architecture)
root="$top/target/deb/$name"
rm -rf "$root"
mkdir -p "$root/DEBIAN" "$root/usr/lib/nginx/modules" "$root/usr/share/nginx/modules-available" \
    "$root/usr/share/doc/$name"

install -m 644 "$so" "$root/usr/lib/nginx/modules/ngx_http_oauth2_module.so"
strip --strip-unneeded "$root/usr/lib/nginx/modules/ngx_http_oauth2_module.so"
echo "load_module modules/ngx_http_oauth2_module.so;" > "$root/usr/share/nginx/modules-available/mod-http-oauth2.conf"

# the shared libraries the module needs, as packages (like dpkg-shlibdeps)
deps="$abi"
for lib in $(objdump -p "$root/usr/lib/nginx/modules/ngx_http_oauth2_module.so" | awk '/NEEDED/ {print $2}'); do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !p {print $NF; p = 1}')
    [ -n "$path" ] || continue
    pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -n "$pkg" ] || pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -n "$pkg" ] || continue
    case ", $deps, " in *", $pkg, "*|*", $pkg ("*) ;; *) deps="$deps, $pkg" ;; esac
done

cat > "$root/usr/share/doc/$name/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ngx_http_oauth2_module
Comment: an nginx module in Rust that makes nginx an OAuth 2.0 / OpenID
 Connect gateway; the Rust crates it links are listed in its Cargo.lock.

Files: *
Copyright: the ngx_http_oauth2_module authors
License: Apache-2.0

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License"); you may not
 use this file except in compliance with the License. You may obtain a copy
 of the License at https://www.apache.org/licenses/LICENSE-2.0 or, on Debian
 systems, in /usr/share/common-licenses/Apache-2.0.
COPY
{
    echo "$name ($version) unstable; urgency=medium"
    echo
    echo "  * Built from ngx_http_oauth2_module $upstream for $abi."
    echo
    echo " -- ngx_http_oauth2_module authors <nobody@localhost>  $(date -R)"
} | gzip -9n > "$root/usr/share/doc/$name/changelog.Debian.gz"

size=$(du -sk "$root/usr" | cut -f1)
cat > "$root/DEBIAN/control" <<CTRL
Package: $name
Version: $version
Architecture: $arch
Maintainer: ngx_http_oauth2_module authors <nobody@localhost>
Installed-Size: $size
Depends: $deps
Recommends: nginx
Section: httpd
Priority: optional
Description: OAuth 2.0 / OpenID Connect gateway module for Nginx
 Validates bearer tokens (JWT locally, opaque ones by introspection) and
 session cookies in nginx's access phase, runs the browser login (code flow
 with PKCE) itself, and lets each location choose between a redirect and a
 401: no auth_request subrequest, no sidecar.
CTRL

# the link in modules-enabled: made on a fresh install (or a reinstall after
# a remove), set aside on remove, deleted on purge; nginx is reloaded through
# its trigger, as for Debian's own module packages
cat > "$root/DEBIAN/postinst" <<'POST'
#!/bin/sh
set -e
link=/etc/nginx/modules-enabled/50-mod-http-oauth2.conf
if [ "$1" = "configure" ]; then
    if [ -L "$link.removed" ]; then
        rm "$link.removed"
        ln -sf /usr/share/nginx/modules-available/mod-http-oauth2.conf "$link"
    elif [ -z "$2" ]; then
        mkdir -p /etc/nginx/modules-enabled
        ln -sf /usr/share/nginx/modules-available/mod-http-oauth2.conf "$link"
    fi
    if command -v dpkg-trigger >/dev/null 2>&1; then
        dpkg-trigger --no-await nginx-reload || true
    fi
fi
POST
cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
link=/etc/nginx/modules-enabled/50-mod-http-oauth2.conf
if [ "$1" = "remove" ] && [ -L "$link" ]; then
    mv "$link" "$link.removed"
fi
PRERM
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
link=/etc/nginx/modules-enabled/50-mod-http-oauth2.conf
if [ "$1" = "purge" ]; then
    rm -f "$link" "$link.removed"
fi
if [ "$1" = "remove" ] && command -v dpkg-trigger >/dev/null 2>&1; then
    dpkg-trigger --no-await nginx-reload || true
fi
POSTRM
chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
(cd "$root" && find usr -type f -exec md5sum {} + > DEBIAN/md5sums)

out="$top/target/deb/${name}_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$out" >/dev/null
echo "$out"
