#!/usr/bin/env bash
# Builds the module for Debian's own nginx: the source tree that Debian's
# nginx-dev installs (/usr/share/nginx/src), configured with Debian's own
# flags for third-party modules (its conf_flags), then the module against it
# (NGINX_BUILD_DIR). Installs nginx and nginx-dev first when run as root.
#
#   scripts/debian-build.sh     -> target/debian/release/libngx_http_oauth2_module.so
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
src=/usr/share/nginx/src

if [ ! -f "$src/conf_flags" ] || [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo ">> installing Debian's nginx and nginx-dev" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # the package starts nothing here (no init system in a container);
        # on a host, keep the service from taking port 80 during the build
        apt-get install -y -qq nginx nginx-dev >/dev/null
    else
        echo "Debian's nginx-dev is missing: sudo apt-get install nginx nginx-dev" >&2
        exit 1
    fi
fi

build="$top/target/debian-nginx"
version=$(/usr/sbin/nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
stamp="$build/.configured-$version"
if [ ! -f "$stamp" ]; then
    echo ">> configuring nginx $version's source with Debian's flags" >&2
    rm -rf "$build"
    mkdir -p "$build"
    cp -a "$src/." "$build/"
    (
        cd "$build"
        # conf_flags defines NGX_CONF_FLAGS=( ... ), the flags Debian builds
        # its own dynamic modules with (--with-compat among them)
        # shellcheck disable=SC1091
        . ./conf_flags
        ./configure "${NGX_CONF_FLAGS[@]}" > configure.log 2>&1
    ) || { echo "configure failed, see $build/configure.log" >&2; exit 1; }
    touch "$stamp"
fi

echo ">> building the module against Debian's nginx $version" >&2
cd "$top"
NGINX_BUILD_DIR="$build/objs" CARGO_TARGET_DIR="$top/target/debian" \
    cargo build --release -p ngx_http_oauth2_module
echo "$top/target/debian/release/libngx_http_oauth2_module.so"
