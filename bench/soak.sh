#!/usr/bin/env bash
# Soak: a bounded wrk run (default 10 minutes, 127.0.0.1 only) on bearer
# tokens (3,000 distinct ones, so the token cache churns) and a cookie
# session, sampling the worker's RSS every 10 s. Fails when RSS grows by 5%
# or more after the warm-up (the first minute).
#
#   bench/soak.sh              (DURATION=600 CONNECTIONS=4 TOKENS=3000)
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-600}
CONNECTIONS=${CONNECTIONS:-4}
TOKENS=${TOKENS:-3000}
WARMUP=${WARMUP:-60}

build
start_op
gateway_conf 1 "oauth2_token_cache 1m;"
start_nginx "$WORK/nginx.conf"
COOKIE=$(get_cookie)
echo "minting $TOKENS distinct tokens..."
for i in $(seq 1 "$TOKENS"); do
    curl -sf -X POST -d "{\"claims\":{\"sub\":\"user-$i\",\"exp\":$(( $(date +%s) + DURATION + 3600 ))}}" "$OP_URL/__test/mint"
    echo
done > "$WORK/tokens.txt"
cat > "$WORK/tokens.lua" <<EOF
local tokens = {}
for line in io.lines("$WORK/tokens.txt") do tokens[#tokens + 1] = line end
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", "/api/x", { ["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1] })
end
EOF

wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/tokens.lua" "http://127.0.0.1:$NGX_PORT" > "$WORK/wrk-bearer.txt" 2>&1 &
w1=$!
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "Cookie: $COOKIE" "http://127.0.0.1:$NGX_PORT/app/x" > "$WORK/wrk-cookie.txt" 2>&1 &
w2=$!
worker=$(worker_pids | head -1)
echo "time_s rss_kb" > "$WORK/rss.txt"
t=0
while kill -0 $w1 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$worker/status" 2>/dev/null || echo 0)
    echo "$t $rss" >> "$WORK/rss.txt"
    sleep 10
    t=$((t + 10))
done
wait $w1 $w2 || true
cat "$WORK/rss.txt" | column -t
base=$(awk -v w="$WARMUP" 'NR > 1 && $1 >= w { print $2; exit }' "$WORK/rss.txt")
last=$(tail -1 "$WORK/rss.txt" | awk '{print $2}')
growth=$(awk -v a="$base" -v b="$last" 'BEGIN { printf "%.2f", (b - a) * 100 / a }')
for kind in bearer cookie; do
    f="$WORK/wrk-$kind.txt"
    echo "$kind: $(awk '/requests in/ {print $1}' "$f") requests, non-2xx: $(awk '/Non-2xx/ {print $NF}' "$f")"
done
echo "worker RSS after warm-up: ${base} kB, at the end: ${last} kB, growth ${growth}%"
awk -v g="$growth" 'BEGIN { exit !(g < 5) }' && echo "soak: OK" || { echo "soak: FAILED (see $WORK)"; exit 1; }
