#!/usr/bin/env bash
# The module as Debian's users get it (part of make test): build the
# package, install it into Debian's nginx, check `nginx -t` on Debian's own
# default configuration with the module enabled, check that a module built
# for another nginx is refused with nginx's own message (no crash), then run
# the whole t/ suite against /usr/sbin/nginx with the installed module.
# Needs root (it installs a package).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
if [ "$(id -u)" != 0 ]; then
    echo "the Debian part of make test installs a package: run it as root (or make test DEBIAN=0)" >&2
    exit 1
fi
t0=$(date +%s)
deb=$(scripts/make-deb.sh | tail -1)
echo ">> installing $deb" >&2
# dpkg -i installs it even when a package of the same version is there
# (apt-get would keep the installed one); its dependencies (Debian's nginx)
# are there since the build
dpkg -i "$deb" >/dev/null
cmp -s <(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/nginx/modules/ngx_http_oauth2_module.so) \
    /usr/lib/nginx/modules/ngx_http_oauth2_module.so \
    || { echo "not ok: the installed module is not the one just built" >&2; exit 1; }
echo "ok: installed $(basename "$deb")"
link=/etc/nginx/modules-enabled/50-mod-http-oauth2.conf
[ "$(readlink "$link")" = /usr/share/nginx/modules-available/mod-http-oauth2.conf ] \
    || { echo "not ok: $link does not enable the module" >&2; exit 1; }
echo "ok: the package enables the module ($link)"
out=$(/usr/sbin/nginx -t 2>&1) || { echo "not ok: nginx -t with Debian's configuration: $out" >&2; exit 1; }
/usr/sbin/nginx -T 2>/dev/null | grep -q "^load_module modules/ngx_http_oauth2_module.so;" \
    || { echo "not ok: Debian's configuration does not load the module" >&2; exit 1; }
echo "ok: nginx -t on Debian's default configuration with the module loaded"

# a module built for another nginx (the vendored one): nginx's own refusal
other="$top/target/${PROFILE:-debug}/libngx_http_oauth2_module.so"
if [ -f "$other" ]; then
    tmp=$(mktemp -d)
    printf 'load_module %s;\nevents {}\n' "$other" > "$tmp/nginx.conf"
    set +e
    msg=$(/usr/sbin/nginx -t -p "$tmp" -c "$tmp/nginx.conf" 2>&1)
    rc=$?
    set -e
    rm -rf "$tmp"
    if [ "$rc" = 1 ] && grep -q 'version [0-9]* instead of [0-9]*' <<< "$msg"; then
        echo "ok: a module of another nginx is refused: $(grep -o 'module .* instead of [0-9]*' <<< "$msg")"
    else
        echo "not ok: a mismatched module gave exit $rc: $msg" >&2
        exit 1
    fi
fi

echo ">> the t/ suite against /usr/sbin/nginx $(/usr/sbin/nginx -v 2>&1 | sed 's|.*/||') with the installed module" >&2
TEST_NGINX_BINARY=/usr/sbin/nginx \
TEST_NGINX_MODULE=/usr/lib/nginx/modules/ngx_http_oauth2_module.so \
    prove -r t/
echo "Debian part: $(( $(date +%s) - t0 )) s"
