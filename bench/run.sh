#!/usr/bin/env bash
# Benchmarks, measured in one run on 127.0.0.1: the same nginx with no auth
# (the ceiling), this module (cached RS256 and ES256 bearer tokens, a cookie
# session, a new RS256 token on every request), and nginx auth_request to a
# sidecar that answers 200 at once (the floor of any sidecar design). One
# nginx worker each; wrk with fixed connections and duration; every scenario
# three times, interleaved; the median is reported with its ratio to the
# ceiling. Writes bench/RESULTS.md.
#
#   bench/run.sh            (DURATION=10 CONNECTIONS=32 ROUNDS=3 MISS_TOKENS=10000)
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
MISS_TOKENS=${MISS_TOKENS:-10000}

build
start_op
SIDECAR_PORT=$(free_port)
cat > "$WORK/sidecar.conf" <<EOF
worker_processes 1;
error_log logs/sidecar-error.log;
pid logs/sidecar.pid;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$SIDECAR_PORT;
        location / { return 200; }
    }
}
EOF
cat > "$WORK/nginx.conf" <<EOF
load_module $MODULE;
worker_processes 1;
error_log logs/error.log notice;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    oauth2_issuer $OP_URL;
    oauth2_client_id nginx;
    oauth2_client_secret nginx-secret;
    oauth2_audience urn:test:api urn:test:api:es256;
    oauth2_cookie_secret_file $WORK/cookie.keys;
    oauth2_cookie_secure off;
    upstream sidecar {
        server 127.0.0.1:$SIDECAR_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location /ceiling { empty_gif; }
        location /bearer { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
        location /app/ { oauth2_auth on; empty_gif; }
        location = /oauth2/callback { oauth2_callback; }
        location /authreq { auth_request /_auth; empty_gif; }
        location = /_auth {
            internal;
            proxy_pass http://sidecar;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
    }
}
EOF
mkdir -p "$WORK/logs"
"$NGINX" -p "$WORK/" -c "$WORK/sidecar.conf" -g 'daemon off;' &
PIDS+=($!)
wait_port "$SIDECAR_PORT"
start_nginx "$WORK/nginx.conf"

RS=$(get_token urn:test:api)
ES=$(get_token urn:test:api:es256)
COOKIE=$(get_cookie)
echo "minting $MISS_TOKENS distinct RS256 tokens..." >&2
node "$TOP/bench/mint.mjs" "$WORK/op" "$OP_URL" "$MISS_TOKENS" RS256 > "$WORK/miss.txt"
cat > "$WORK/miss.lua" <<EOF
local tokens = {}
for line in io.lines("$WORK/miss.txt") do tokens[#tokens + 1] = line end
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", "/bearer", { ["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1] })
end
EOF
base="http://127.0.0.1:$NGX_PORT"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $RS" "$base/bearer")" = 200 ]
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ES" "$base/bearer")" = 200 ]
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "$base/app/x")" = 200 ]
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/authreq")" = 200 ]
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(head -1 "$WORK/miss.txt")" "$base/bearer")" = 200 ]

SCENARIOS=(ceiling rs256 es256 cookie miss authreq)
declare -A LABEL=(
    [ceiling]="nginx, no auth (ceiling)"
    [rs256]="this module, RS256 bearer (cached)"
    [es256]="this module, ES256 bearer (cached)"
    [cookie]="this module, cookie session"
    [miss]="this module, new RS256 token every request ($MISS_TOKENS tokens)"
    [authreq]="nginx auth_request to a 200 sidecar (floor of sidecars)"
)
run_one() {
    local s=$1 out=$2
    case $s in
        ceiling) wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Authorization: Bearer $RS" "$base/ceiling" ;;
        rs256) wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Authorization: Bearer $RS" "$base/bearer" ;;
        es256) wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Authorization: Bearer $ES" "$base/bearer" ;;
        cookie) wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Cookie: $COOKIE" "$base/app/x" ;;
        miss) wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/miss.lua" "$base" ;;
        authreq) wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Authorization: Bearer $RS" "$base/authreq" ;;
    esac > "$out" 2>&1
    if grep -q 'Non-2xx' "$out"; then
        echo "scenario $s had non-2xx responses:" >&2
        cat "$out" >&2
        exit 1
    fi
}
for round in $(seq 1 "$ROUNDS"); do
    for s in "${SCENARIOS[@]}"; do
        echo "round $round: $s" >&2
        run_one "$s" "$WORK/$s.$round.txt"
    done
done

rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
p99() { awk '$1 == "99%" {print $2}' "$1"; }
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
to_ms() { awk '{v = $1; if (v ~ /us$/) {sub(/us/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms/, "", v)} else if (v ~ /s$/) {sub(/s/, "", v); v *= 1000} printf "%.2f\n", v}'; }
declare -A RPS P99
for s in "${SCENARIOS[@]}"; do
    RPS[$s]=$(for r in $(seq 1 "$ROUNDS"); do rps "$WORK/$s.$r.txt"; done | median)
    P99[$s]=$(for r in $(seq 1 "$ROUNDS"); do p99 "$WORK/$s.$r.txt" | to_ms; done | median)
done
C=${RPS[ceiling]}
V=$(openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048/ {print $NF}')
LIMIT=$(awk -v c="$C" -v v="$V" 'BEGIN { printf "%.0f", 1 / (1 / c + 1 / v) }')
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

{
    echo "| scenario | requests/s (median of $ROUNDS) | p99 latency | ratio to the ceiling |"
    echo "|---|---:|---:|---:|"
    for s in "${SCENARIOS[@]}"; do
        printf '| %s | %.0f | %s ms | %s |\n' "${LABEL[$s]}" "${RPS[$s]}" "${P99[$s]}" "$(ratio "${RPS[$s]}" "$C")"
    done
    echo
    echo "- RSA-2048 verifies/s on this machine (\`openssl speed rsa2048\`): V = $V;"
    echo "  physical limit of the cache-miss scenario 1/(1/C + 1/V) = $LIMIT requests/s;"
    echo "  cache-miss RS256 reaches $(ratio "${RPS[miss]}" "$LIMIT") of it."
    echo "- cached bearer vs the auth_request floor: $(ratio "${RPS[rs256]}" "${RPS[authreq]}")×."
    echo
    echo "The ceiling and the auth_request floor get the same request as the RS256 scenario"
    echo "(with its Authorization header), so every ratio is the cost of the check itself."
    echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s, one nginx worker, all on 127.0.0.1;"
    echo "$(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -sr), $(date -u +%Y-%m-%d)."
} > "$WORK/table.md"
cat "$WORK/table.md"
{
    echo "# Benchmark results"
    echo
    echo "Produced by \`bench/run.sh\` (all numbers from one run; ratios against the ceiling measured in the same run)."
    echo
    cat "$WORK/table.md"
} > "$TOP/bench/RESULTS.md"
