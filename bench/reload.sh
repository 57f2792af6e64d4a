#!/usr/bin/env bash
# Reload under load: `nginx -s reload` five times during a bounded wrk run on
# a bearer location and on a cookie location (127.0.0.1 only). Fails unless
# every response is 2xx and wrk saw no socket error.
#
#   bench/reload.sh            (DURATION=20 CONNECTIONS=8 RELOADS=5)
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-8}
RELOADS=${RELOADS:-5}

build
start_op
gateway_conf 2
start_nginx "$WORK/nginx.conf"
TOKEN=$(get_token)
COOKIE=$(get_cookie)
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$NGX_PORT/api/x")" = 200 ]
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "http://127.0.0.1:$NGX_PORT/app/x")" = 200 ]

# One connection per request ("Connection: close"): a graceful reload closes
# idle keep-alive connections, and a client that sent a request on one at
# that moment must retry it (RFC 9112 §9.3.1) — with or without this module.
# Without keep-alive every request either reaches a worker or is never sent.
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "Connection: close" -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$NGX_PORT/api/x" > "$WORK/wrk-bearer.txt" 2>&1 &
w1=$!
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "Connection: close" -H "Cookie: $COOKIE" \
    "http://127.0.0.1:$NGX_PORT/app/x" > "$WORK/wrk-cookie.txt" 2>&1 &
w2=$!
interval=$(( DURATION / (RELOADS + 1) ))
for i in $(seq 1 "$RELOADS"); do
    sleep "$interval"
    "$NGINX" -p "$WORK/" -c "$WORK/nginx.conf" -s reload
    echo "reload $i at $((i * interval))s"
done
wait $w1 $w2

status=0
for kind in bearer cookie; do
    f="$WORK/wrk-$kind.txt"
    reqs=$(awk '/requests in/ {print $1}' "$f")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$f")
    sockerr=$(grep -o 'Socket errors:.*' "$f" || true)
    echo "$kind: $reqs requests, non-2xx: ${non2xx:-0}, ${sockerr:-socket errors: none}"
    if [ -n "$non2xx" ] || [ -n "$sockerr" ]; then status=1; fi
done
alerts=$(grep -cE '\[(alert|crit|emerg)\]|exited on signal' "$WORK/logs/error.log" || true)
echo "reloads: $RELOADS, [alert]/[crit]/[emerg]/crashes in the error log: $alerts"
[ "$alerts" = 0 ] || status=1
[ $status = 0 ] && echo "reload under load: OK" || echo "reload under load: FAILED (see $WORK)"
exit $status
