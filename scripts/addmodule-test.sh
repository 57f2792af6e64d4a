#!/usr/bin/env bash
# nginx's own build of the module, as the config file allows:
#   ./configure --with-compat --add-dynamic-module=THIS && make modules
# with the vendored nginx source (the same nginx as the vendored binary and
# with its flags), then the module it makes loaded into the vendored nginx
# and a part of t/ run against it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
profile=${PROFILE:-debug}
nginx=$(ls -t "$top"/target/"$profile"/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -1)
[ -x "$nginx" ] || cargo build -p ngx_http_oauth2_module
nginx=$(ls -t "$top"/target/"$profile"/build/nginx-sys-*/out/objs/nginx | head -1)
src=$(cargo metadata --format-version 1 2>/dev/null \
    | python3 -c 'import json,sys; m=json.load(sys.stdin); print([p for p in m["packages"] if p["name"]=="nginx-src"][0]["manifest_path"])')
src="$(dirname "$src")/nginx"
[ -f "$src/src/core/nginx.h" ] || { echo "the vendored nginx source is not at $src" >&2; exit 1; }

# the vendored binary's configure flags, without its --builddir
flags=$("$nginx" -V 2>&1 | sed -n 's/^configure arguments: //p' | sed 's/--builddir=[^ ]*//')
build="$top/target/addmodule-nginx"
rm -rf "$build"
mkdir -p "$build"
cp -a "$src/." "$build/"
cd "$build"
# a release tarball has ./configure, nginx's repository auto/configure
configure=./configure
[ -x "$configure" ] || configure=./auto/configure
echo ">> $configure $flags --add-dynamic-module=$top" >&2
# shellcheck disable=SC2086
"$configure" $flags --add-dynamic-module="$top" > configure.log 2>&1 \
    || { tail -20 configure.log >&2; exit 1; }
echo ">> make modules" >&2
make -j2 modules > make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
so="$build/objs/ngx_http_oauth2_module.so"
[ -f "$so" ] || { echo "make modules made no $so" >&2; exit 1; }
echo ">> t/001 and t/010 with the module nginx's build made, in the vendored nginx" >&2
cd "$top"
TEST_NGINX_BINARY="$nginx" TEST_NGINX_MODULE="$so" prove t/001-bearer.t t/010-login.t
