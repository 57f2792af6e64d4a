#!/usr/bin/env bash
# make demo: the test OpenID Provider on 127.0.0.1:9000 and nginx with
# nginx-conf/demo.conf on 127.0.0.1:8080, until Ctrl-C.
# STORE=redis make demo: sessions in Redis (redis-server started here, on
# 127.0.0.1:6390), with the provider's back-channel logout.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
source "$top/scripts/ports.sh"
profile=${PROFILE:-debug}
nginx=$(ls -t "$top"/target/"$profile"/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -1)
module="$top/target/$profile/libngx_http_oauth2_module.so"
[ -x "$nginx" ] && [ -f "$module" ] || { echo "build first: make build" >&2; exit 1; }

prefix="$top/demo"
mkdir -p "$prefix"/{modules,logs,html,op,conf}
# the configuration is nginx-conf/demo.conf itself (linked), so its relative
# paths (cookie.keys) are relative to demo/conf/
ln -sf "$top/nginx-conf/demo.conf" "$prefix/conf/demo.conf"
ln -sf "$module" "$prefix/modules/ngx_http_oauth2_module.so"
mkdir -p "$prefix/html/public"
echo "public page: no login needed" > "$prefix/html/public/index.html"
[ -f "$prefix/conf/cookie.keys" ] || head -c 32 /dev/urandom | base64 > "$prefix/conf/cookie.keys"

store=${STORE:-cookie}
ports=(9000 8080 8081)
op_args=()
rm -f "$prefix/conf/demo-store-http.conf" "$prefix/conf/demo-store-server.conf"
case $store in
    cookie) ;;
    redis)
        command -v redis-server >/dev/null || { echo "STORE=redis needs redis-server (apt-get install redis-server)" >&2; exit 1; }
        ports+=(6390)
        echo "oauth2_session_store redis redis://127.0.0.1:6390 prefix=demo:;" > "$prefix/conf/demo-store-http.conf"
        echo "location = /oauth2/backchannel { oauth2_backchannel_logout; }" > "$prefix/conf/demo-store-server.conf"
        op_args=(--backchannel-uri http://127.0.0.1:8080/oauth2/backchannel)
        ;;
    *) echo "STORE must be cookie or redis" >&2; exit 1 ;;
esac

for port in "${ports[@]}"; do
    if port_open "$port"; then
        echo "port $port is in use on 127.0.0.1: stop what runs there first" >&2
        exit 1
    fi
done

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; echo; echo "demo stopped"' EXIT INT TERM
if [ "$store" = redis ]; then
    mkdir -p "$prefix/redis"
    redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no --dir "$prefix/redis" \
        > "$prefix/logs/redis.log" 2>&1 &
    pids+=($!)
    wait_port 6390 || exit 1
fi
node "$top/t/op/op.mjs" --port 9000 --state "$prefix/op" "${op_args[@]}" \
    --redirect-uri http://127.0.0.1:8080/oauth2/callback > "$prefix/logs/op.log" 2>&1 &
pids+=($!)
wait_port 9000 || exit 1     # the provider first: nginx fetches its keys at start
"$nginx" -p "$prefix/" -c conf/demo.conf -g 'daemon off;' &
ngx=$!
pids+=($ngx)
wait_port 8080 || exit 1
sleep 0.5

cat <<MSG

The demo runs: nginx on http://127.0.0.1:8080, the OpenID Provider on http://127.0.0.1:9000
(nginx-conf/demo.conf, logs in demo/logs/), sessions: $store$( [ "$store" = redis ] && echo " (redis-server on 127.0.0.1:6390; redis-cli -p 6390 --scan shows the records)").

In a browser on this machine: open http://127.0.0.1:8080/app, sign in with any
name and any password, click "Continue"; you come back to /app logged in.
http://127.0.0.1:8080/oauth2/sign_out signs out.

The API, in another shell:

  # no token: 401 with WWW-Authenticate
  curl -i http://127.0.0.1:8080/api/hello

  # get an access token (client_credentials) and call the API with it: 200
  TOKEN=\$(curl -s -u api-client:api-secret -d grant_type=client_credentials \\
          -d scope=api:read http://127.0.0.1:9000/token | sed 's/.*"access_token":"\\([^"]*\\)".*/\\1/')
  curl -i -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:8080/api/hello

  # a tampered token: 401 error="invalid_token"
  curl -i -H "Authorization: Bearer \${TOKEN}x" http://127.0.0.1:8080/api/hello

  # why each request was refused
  tail demo/logs/oauth2.log

Ctrl-C stops the demo.
MSG
wait $ngx
