#!/usr/bin/env bash
# Benchmarks, measured in one run on 127.0.0.1 (writes bench/RESULTS.md):
#  1. throughput: the same nginx with no auth (the ceiling), this module
#     (cached RS256 and ES256 bearer tokens, the same RS256 token at a
#     location with three named providers, a cookie session, a new RS256
#     token on every request), nginx auth_request to a sidecar that answers
#     200 at once (the floor of any sidecar design), and the Apache peers
#     (no auth, mod_oauth2, mod_auth_openidc with a bearer token and with a
#     session cookie). One nginx worker / one Apache process each; wrk with
#     fixed connections and duration; every scenario ROUNDS times,
#     interleaved; median rates, and ratios taken round by round against
#     the ceiling's run of the same round (median of the rounds);
#  2. non-blocking: p99 of a public location while 50 logins wait on a token
#     endpoint that answers after 2 s, against its idle p99;
#  3. memory: worker RSS after 1,000,000 distinct valid tokens, against the
#     configured token cache bound.
#
#   bench/run.sh    (DURATION=6 CONNECTIONS=32 ROUNDS=5 WARMUP=2 MISS_TOKENS=10000
#                    MEM_TOKENS=1000000 MEM_CACHE=16m; SCENARIOS="..." runs
#                    only those, PARTS="throughput nonblocking memory" only
#                    those parts; PERF=1 also profiles each nginx scenario
#                    with perf in an extra, uncounted round: $WORK/perf.*.txt;
#                    HALT_POLL_NS: see bench/lib.sh; CACHED_ROUNDS=30
#                    CACHED_DURATION=2: the cached paths measured again)
source "$(dirname "$0")/lib.sh"
source "$TOP/bench/apache.sh"
DURATION=${DURATION:-6}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-5}
MISS_TOKENS=${MISS_TOKENS:-10000}
MEM_TOKENS=${MEM_TOKENS:-1000000}
MEM_CACHE=${MEM_CACHE:-16m}
WARMUP=${WARMUP:-2}
ALL_SCENARIOS="ceiling rs256 ceiling_es es256 ceiling_again rs256_multi ceiling_cookie cookie cookie_shm cookie_redis cookie_redis_miss dpop miss authreq ap_ceiling ap_oauth2 ap_openidc ap_cookie w2_ceiling w2_rs256 w2_miss wauto_ceiling wauto_rs256 wauto_miss"
read -r -a SCENARIOS <<< "${SCENARIOS:-$ALL_SCENARIOS}"
PARTS=${PARTS:-"throughput nonblocking memory"}
want() { [[ " $PARTS " == *" $1 "* ]]; }

build
set_halt_poll
# PIN=1 (the default with two CPUs or more): the one-worker nginx on the
# second CPU, wrk on the first, so neither moves between CPUs mid-run
AFFINITY=""
PIN_WRK=""
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    AFFINITY="worker_cpu_affinity 10;"
    PIN_WRK="taskset -c 0"
fi
NGX_PORT=$(free_port)
start_op --access-ttl 7200 --redirect-uri "$(apache_redirect_uri)" \
    --redirect-uri "http://127.0.0.1:$NGX_PORT/shm/callback" \
    --redirect-uri "http://127.0.0.1:$NGX_PORT/redis/callback"
# the Redis session store (Debian's redis-server, no persistence)
REDIS_PORT=$(free_port)
mkdir -p "$WORK/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK/redis" > "$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"
SIDECAR_PORT=$(free_port)
cat > "$WORK/sidecar.conf" <<NEOF
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
NEOF
# two more providers for the multi-provider scenario, with static keys (no
# network): the token's provider is the third listed
head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$WORK/multi.k"
printf '{"keys":[{"kty":"oct","kid":"multi","alg":"HS256","k":"%s"}]}\n' "$(cat "$WORK/multi.k")" > "$WORK/multi.jwks"
cat > "$WORK/nginx.conf" <<NEOF
load_module $MODULE;
worker_processes 1;
$AFFINITY
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
    oauth2_provider one { issuer $OP_URL; audience urn:test:api urn:test:api:es256; }
    oauth2_provider two { jwks_file $WORK/multi.jwks; algorithms HS256; audience urn:bench:two; }
    oauth2_provider three { jwks_file $WORK/multi.jwks; algorithms HS256; audience urn:bench:three; }
    oauth2_cookie_secure off;
    upstream sidecar {
        server 127.0.0.1:$SIDECAR_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location /ceiling { empty_gif; }
        location /public { empty_gif; }
        location /bearer { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
        # DPoP-bound tokens, a fresh proof every request (made before the
        # run: their iat may be an hour old)
        location /dpop {
            oauth2_auth on;
            oauth2_on_failure 401;
            oauth2_dpop required;
            oauth2_clock_skew 1h;
            empty_gif;
        }
        location /multi { oauth2_auth two three one; oauth2_on_failure 401; empty_gif; }
        location /app/ { oauth2_auth on; empty_gif; }
        location /shm/ {
            oauth2_auth on;
            oauth2_session_store shm zone=bench_sessions:4m;
            oauth2_cookie_name shm_session;
            oauth2_redirect_uri /shm/callback;
            empty_gif;
            location = /shm/callback { oauth2_callback; }
        }
        location /redis/ {
            oauth2_auth on;
            oauth2_session_store redis redis://127.0.0.1:$REDIS_PORT;
            oauth2_cookie_name redis_session;
            oauth2_redirect_uri /redis/callback;
            empty_gif;
            location = /redis/callback { oauth2_callback; }
        }
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
NEOF
mkdir -p "$WORK/logs"
"$NGINX" -p "$WORK/" -c "$WORK/sidecar.conf" -g 'daemon off;' &
PIDS+=($!)
wait_port "$SIDECAR_PORT"
start_nginx "$WORK/nginx.conf"
# the same server with several workers (w2_*: 2, wauto_*: auto), each on its
# own port: per-worker caches, so every worker verifies a new token once
declare -A WPORT
for w in 2 auto; do
    WPORT[$w]=$(free_port)
    sed -e "s/^worker_processes 1;/worker_processes $w;/" -e '/^worker_cpu_affinity/d' \
        -e "s/listen 127.0.0.1:$NGX_PORT;/listen 127.0.0.1:${WPORT[$w]};/" \
        -e "s#pid logs/nginx.pid;#pid logs/nginx-w$w.pid;#" \
        -e "s#error_log logs/error.log#error_log logs/error-w$w.log#" \
        "$WORK/nginx.conf" > "$WORK/nginx-w$w.conf"
    "$NGINX" -p "$WORK/" -c "$WORK/nginx-w$w.conf" -g 'daemon off;' 2>>"$WORK/logs/stderr.log" &
    PIDS+=($!)
    wait_port "${WPORT[$w]}"
done
start_apache

RS=$(get_token urn:test:api)
ES=$(get_token urn:test:api:es256)
COOKIE=$(get_cookie)
SHM_COOKIE=$(get_cookie /shm/ shm_session)
REDIS_COOKIE=$(get_cookie /redis/ redis_session)
# the same Redis session under 20000 other seals: no worker has one cached,
# so every request of cookie_redis_miss reads the record from Redis
(cd "$TOP" && cargo run -q --release -p oauth2-core --example reseal "$WORK/cookie.keys" "$OP_URL" nginx \
    "${REDIS_COOKIE#redis_session=}" 20000) > "$WORK/reseal.txt"
cat > "$WORK/redis_miss.lua" <<LEOF
local cookies = {}
for line in io.lines("$WORK/reseal.txt") do cookies[#cookies + 1] = "redis_session=" .. line end
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", "/redis/x", { ["Cookie"] = cookies[(i % #cookies) + 1] })
end
LEOF
AP_COOKIE=$(get_apache_cookie)
# DPoP: a bound token and a file of one-use proofs per wrk run
DPOP_PROOFS=${DPOP_PROOFS:-150000}
DPOP_FILES=$((ROUNDS + 1 + ${PERF:-0}))
if [[ " ${SCENARIOS[*]} " == *" dpop "* ]]; then
    echo "making $DPOP_FILES × $DPOP_PROOFS DPoP proofs..." >&2
    node "$TOP/bench/dpop.mjs" "$OP_URL" "http://127.0.0.1:$NGX_PORT/dpop" "$DPOP_FILES" "$DPOP_PROOFS" "$WORK/dpop"
fi
DPOP_RUN=0
dpop_lua() { # dpop_lua N: the script of run N (its own proofs)
    cat > "$WORK/dpop.$1.lua" <<LEOF
local proofs = {}
for line in io.lines("$WORK/dpop.$1") do proofs[#proofs + 1] = line end
local auth = "DPoP " .. io.open("$WORK/dpop.token"):read("*l")
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", "/dpop", { ["Authorization"] = auth, ["DPoP"] = proofs[i] })
end
LEOF
}
echo "minting $MISS_TOKENS distinct RS256 tokens..." >&2
node "$TOP/bench/mint.mjs" "$WORK/op" "$OP_URL" "$MISS_TOKENS" RS256 > "$WORK/miss.txt"
cat > "$WORK/miss.lua" <<LEOF
local tokens = {}
for line in io.lines("$WORK/miss.txt") do tokens[#tokens + 1] = line end
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", "/bearer", { ["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1] })
end
LEOF
base="http://127.0.0.1:$NGX_PORT"
apbase="http://127.0.0.1:$AP_PORT"
expect() { # expect CODE ARGS...: curl must answer CODE
    local want=$1 got
    shift
    got=$(curl -s -o /dev/null -w '%{http_code}' "$@")
    if [ "$got" != "$want" ]; then
        echo "check failed: curl $* answered $got, expected $want" >&2
        exit 1
    fi
}
expect 200 -H "Authorization: Bearer $RS" "$base/bearer"
expect 200 -H "Authorization: Bearer $RS" "$base/multi"
expect 401 "$base/bearer"
expect 200 -H "Authorization: Bearer $ES" "$base/bearer"
expect 200 -H "Cookie: $COOKIE" "$base/app/x"
expect 200 -H "Cookie: $SHM_COOKIE" "$base/shm/x"
expect 200 -H "Cookie: $REDIS_COOKIE" "$base/redis/x"
expect 200 -H "Cookie: redis_session=$(head -1 "$WORK/reseal.txt")" "$base/redis/x"
expect 200 "$base/authreq"
expect 200 -H "Authorization: Bearer $(head -1 "$WORK/miss.txt")" "$base/bearer"
for w in 2 auto; do
    expect 200 -H "Authorization: Bearer $RS" "http://127.0.0.1:${WPORT[$w]}/bearer"
    expect 401 "http://127.0.0.1:${WPORT[$w]}/bearer"
done
expect 200 -H "Authorization: Bearer $RS" "$apbase/ceiling/pixel.gif"
expect 200 -H "Authorization: Bearer $RS" "$apbase/mod_oauth2/pixel.gif"
expect 401 "$apbase/mod_oauth2/pixel.gif"
expect 200 -H "Authorization: Bearer $RS" "$apbase/openidc_bearer/pixel.gif"
expect 401 "$apbase/openidc_bearer/pixel.gif"
expect 200 -H "Cookie: $AP_COOKIE" "$apbase/app/pixel.gif"
expect 302 "$apbase/app/pixel.gif"

declare -A LABEL=(
    [ceiling]="nginx, no auth (ceiling)"
    [ceiling_es]="nginx, no auth, the ES256 request's headers"
    [ceiling_again]="nginx, no auth (the ceiling again, later in each round)"
    [ceiling_cookie]="nginx, no auth, the cookie request's headers"
    [rs256]="this module, RS256 bearer (cached)"
    [rs256_multi]="this module, RS256 bearer (cached), location with 3 providers"
    [es256]="this module, ES256 bearer (cached)"
    [cookie]="this module, cookie session"
    [cookie_shm]="this module, session in shared memory (shm store)"
    [cookie_redis]="this module, session in Redis (redis store, worker cache hit)"
    [cookie_redis_miss]="this module, session in Redis, every request a worker cache miss"
    [miss]="this module, new RS256 token every request ($MISS_TOKENS tokens)"
    [dpop]="this module, DPoP-bound RS256 token (cached), a new ES256 proof every request"
    [authreq]="nginx auth_request to a 200 sidecar (floor of sidecars)"
    [ap_ceiling]="Apache, no auth"
    [ap_oauth2]="Apache mod_oauth2, RS256 bearer"
    [ap_openidc]="Apache mod_auth_openidc, RS256 bearer"
    [ap_cookie]="Apache mod_auth_openidc, cookie session"
    [w2_ceiling]="worker_processes 2: nginx, no auth (its ceiling)"
    [w2_rs256]="worker_processes 2: RS256 bearer (cached)"
    [w2_miss]="worker_processes 2: new RS256 token every request"
    [wauto_ceiling]="worker_processes auto ($(nproc)): nginx, no auth (its ceiling)"
    [wauto_rs256]="worker_processes auto ($(nproc)): RS256 bearer (cached)"
    [wauto_miss]="worker_processes auto ($(nproc)): new RS256 token every request"
)
wrk_run() { $WRK_PIN wrk -t1 -c"$CONNECTIONS" -d"${WRK_DURATION:-$DURATION}s" --latency "$@"; }
# the base URL of a w2_* / wauto_* scenario's nginx
wbase() { local w=${1%%_*}; echo "http://127.0.0.1:${WPORT[${w#w}]}"; }
run_one() {
    local s=$1 out=$2
    # wrk on the first CPU against the one-worker nginx on the second; the
    # several-worker scenarios and Apache as the scheduler places them
    WRK_PIN=""
    case $s in w*_* | ap_*) ;; *) WRK_PIN=$PIN_WRK ;; esac
    case $s in
        ceiling | ceiling_again) wrk_run -H "Authorization: Bearer $RS" "$base/ceiling" ;;
        ceiling_es) wrk_run -H "Authorization: Bearer $ES" "$base/ceiling" ;;
        ceiling_cookie) wrk_run -H "Cookie: $COOKIE" "$base/ceiling" ;;
        rs256) wrk_run -H "Authorization: Bearer $RS" "$base/bearer" ;;
        rs256_multi) wrk_run -H "Authorization: Bearer $RS" "$base/multi" ;;
        es256) wrk_run -H "Authorization: Bearer $ES" "$base/bearer" ;;
        cookie) wrk_run -H "Cookie: $COOKIE" "$base/app/x" ;;
        cookie_shm) wrk_run -H "Cookie: $SHM_COOKIE" "$base/shm/x" ;;
        cookie_redis) wrk_run -H "Cookie: $REDIS_COOKIE" "$base/redis/x" ;;
        cookie_redis_miss) wrk_run -s "$WORK/redis_miss.lua" "$base" ;;
        miss) wrk_run -s "$WORK/miss.lua" "$base" ;;
        dpop)
            # a new file of proofs per run (not in a subshell: the count goes on)
            DPOP_RUN=$((DPOP_RUN + 1))
            dpop_lua "$DPOP_RUN"
            wrk_run -s "$WORK/dpop.$DPOP_RUN.lua" "$base"
            ;;
        authreq) wrk_run -H "Authorization: Bearer $RS" "$base/authreq" ;;
        ap_ceiling) wrk_run -H "Authorization: Bearer $RS" "$apbase/ceiling/pixel.gif" ;;
        ap_oauth2) wrk_run -H "Authorization: Bearer $RS" "$apbase/mod_oauth2/pixel.gif" ;;
        ap_openidc) wrk_run -H "Authorization: Bearer $RS" "$apbase/openidc_bearer/pixel.gif" ;;
        ap_cookie) wrk_run -H "Cookie: $AP_COOKIE" "$apbase/app/pixel.gif" ;;
        w*_ceiling) wrk_run -H "Authorization: Bearer $RS" "$(wbase "$s")/ceiling" ;;
        w*_rs256) wrk_run -H "Authorization: Bearer $RS" "$(wbase "$s")/bearer" ;;
        w*_miss) wrk_run -s "$WORK/miss.lua" "$(wbase "$s")" ;;
    esac > "$out" 2>&1
    if grep -q 'Non-2xx' "$out"; then
        echo "scenario $s had non-2xx responses:" >&2
        cat "$out" >&2
        exit 1
    fi
}
if want throughput; then
# Profiles, in an uncounted round: every nginx scenario with PERF=1; else
# (when perf works here) the cached paths and their ceilings, whose cost is
# smaller than the machine's noise between two runs: the module's share of
# the worker's CPU samples in one run measures it without that noise.
declare -A SHARE LIBC LDSO PERF_RPS
PROFILED=()
if [ "${PERF:-0}" = 1 ]; then
    PROFILED=("${SCENARIOS[@]}")
elif perf record -o /dev/null -- true > /dev/null 2>&1; then
    for s in ceiling rs256 ceiling_es es256; do
        [[ " ${SCENARIOS[*]} " == *" $s "* ]] && PROFILED+=("$s")
    done
fi
worker=$(worker_pids | head -1)
for s in "${PROFILED[@]}"; do
    case $s in ap_* | w*_*) continue ;; esac
    echo "profiling: $s" >&2
    perf record -F 1999 -g -p "$worker" -o "$WORK/perf.$s.data" -- sleep "$DURATION" 2>/dev/null &
    perf_pid=$!
    run_one "$s" "$WORK/$s.perf.txt"
    wait "$perf_pid" || true
    perf report -i "$WORK/perf.$s.data" --no-children --percent-limit 1 --stdio 2>/dev/null \
        | grep -v '^$' > "$WORK/perf.$s.txt" || true
    dso() { perf report -i "$WORK/perf.$s.data" --no-children --sort dso --stdio -g none 2>/dev/null \
        | awk -v d="$1" '$2 == d {sub("%", "", $1); print $1; f = 1} END {if (!f) print 0}'; }
    SHARE[$s]=$(dso libngx_http_oauth2_module.so)
    LIBC[$s]=$(dso libc.so.6)
    LDSO[$s]=$(dso ld-linux-x86-64.so.2)
    PERF_RPS[$s]=$(awk '/Requests\/sec/ {print $2}' "$WORK/$s.perf.txt")
    echo "  $WORK/perf.$s.txt (the module: ${SHARE[$s]} % of the samples)" >&2
done
# one short uncounted pass first: every server and cache warm, the first
# round measured like the others
for s in "${SCENARIOS[@]}"; do
    echo "warm-up: $s" >&2
    WRK_DURATION=$WARMUP run_one "$s" "$WORK/$s.warmup.txt"
done
for round in $(seq 1 "$ROUNDS"); do
    for s in "${SCENARIOS[@]}"; do
        echo "round $round: $s" >&2
        run_one "$s" "$WORK/$s.$round.txt"
    done
done
# The cached paths cost less than the machine's noise between two runs of
# the same thing (the A/A line of the report): they are measured again in
# CACHED_ROUNDS short rounds of the two ceilings and the two cached
# scenarios in turn, a ratio per round, the median of the rounds.
CACHED_IDS=""
if [[ " ${SCENARIOS[*]} " == *" ceiling rs256 ceiling_es es256 "* ]]; then
    for round in $(seq 1 "${CACHED_ROUNDS:-30}"); do
        echo "cached paths, round $round of ${CACHED_ROUNDS:-30}" >&2
        for s in ceiling rs256 ceiling_es es256; do
            WRK_DURATION=${CACHED_DURATION:-2} run_one "$s" "$WORK/$s.c$round.txt"
        done
        CACHED_IDS+=" c$round"
    done
fi

fi

rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
p99() { awk '$1 == "99%" {print $2}' "$1"; }
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
to_ms() { awk '{v = $1; if (v ~ /us$/) {sub(/us/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms/, "", v)} else if (v ~ /s$/) {sub(/s/, "", v); v *= 1000} printf "%.2f\n", v}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# worker CPU the scenario costs beyond the ceiling, per request (µs): 1/r − 1/C
cost_us() { awk -v r="$1" -v c="$2" 'BEGIN { if (r > 0 && c > 0) printf "%.2f µs", 1e6 / r - 1e6 / c; else print "-" }'; }
declare -A RPS P99
if want throughput; then
    for s in "${SCENARIOS[@]}"; do
        RPS[$s]=$(for r in $(seq 1 "$ROUNDS"); do rps "$WORK/$s.$r.txt"; done | median)
        P99[$s]=$(for r in $(seq 1 "$ROUNDS"); do p99 "$WORK/$s.$r.txt" | to_ms; done | median)
    done
fi
get() { echo "${RPS[$1]:-0}"; }
# Ratios and costs are taken round by round against the ceiling's run of the
# same round (a few seconds apart), then the median of the rounds: the
# machine's speed drifts by more than the module costs between rounds.
# per_round S C EXPR: EXPR (awk, of a = S's rate, b = C's) for each round
per_round() {
    local s=$1 c=$2 e=$3 r
    for r in ${ROUND_IDS:-$(seq 1 "$ROUNDS")}; do
        awk -v a="$(rps "$WORK/$s.$r.txt")" -v b="$(rps "$WORK/$c.$r.txt")" -v v="${4:-0}" \
            "BEGIN { if (a > 0 && b > 0) printf \"%.6f\\n\", $e }"
    done | median
}
# pratio S [C]: S's rate over C's (S's own ceiling by default)
pratio() { per_round "$1" "${2:-$(ceiling_of "$1")}" 'a / b' | awk '{printf "%.2f", $1}'; }
# pcost S [C]: 1/r − 1/C in µs
pcost() { per_round "$1" "${2:-$(ceiling_of "$1")}" '1e6 / a - 1e6 / b' | awk '{printf "%.2f µs", $1}'; }
# plimit S V: S's rate over its limit 1/(1/C + 1/V), C the round's ceiling
plimit() { per_round "$1" ceiling 'a * (1 / b + 1 / v)' "$2" | awk '{printf "%.2f", $1}'; }
# the ceiling a scenario is compared with: its own nginx's (w2_*, wauto_*)
ceiling_of() { case $1 in w*_*) echo "${1%%_*}_ceiling" ;; es256) echo ceiling_es ;; *) echo ceiling ;; esac; }
C=$(get ceiling)
V=0
if want throughput && [[ " ${SCENARIOS[*]} " == *" miss "* ]]; then
    V=$(openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048/ {print $NF}')
fi
VE=0
if want throughput && [[ " ${SCENARIOS[*]} " == *" dpop "* ]]; then
    VE=$(openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa/ {print $NF}')
fi
LIMIT=$(awk -v c="$C" -v v="$V" 'BEGIN { if (c > 0 && v > 0) printf "%.0f", 1 / (1 / c + 1 / v); else print 0 }')
# the module's own whole validation (parse, signature, claims) of a new
# RS256 token, single-threaded, outside nginx (oauth2-core/examples/verify_speed.rs)
VW=""
if want throughput && [[ " ${SCENARIOS[*]} " == *" miss "* ]]; then
    SPEED=$(cd "$TOP" && cargo run -q --release -p oauth2-core --example verify_speed 2>/dev/null)
    VW=$(awk '/^RS256 jwt::validate/ {sub("/s", "", $NF); print $NF}' <<< "$SPEED")
    VBARE=$(awk '/^RS256 signature only/ {sub("/s", "", $NF); print $NF}' <<< "$SPEED")
    VQ=$(awk '/^RS256 validation \/ signature/ {print $NF}' <<< "$SPEED")
fi
# a hit in a worker's own token cache against one shared by every worker
SHARED=""
if want throughput && [[ " ${SCENARIOS[*]} " == *" w2_miss "* ]] && [ "$V" != 0 ]; then
    SHARED=$(cd "$TOP" && cargo run -q --release -p oauth2-core --example shared_lookup "$(nproc)" 2>/dev/null)
fi

if want nonblocking; then
# --- 2. non-blocking: 50 logins held by a token endpoint that answers after 2 s
LOGINS=50
nb_wrk() { wrk -t1 -c"$CONNECTIONS" -d1s --latency "$base/public" > "$1" 2>&1; }
echo "non-blocking: logging $LOGINS browsers in at the provider, 3 waves..." >&2
for wave in 1 2 3; do
    perl "$TOP/bench/logins.pl" prepare "$OP_URL" "$base" "$LOGINS" > "$WORK/logins.$wave.txt"
done
curl -sf -d '{"tokenDelay":2000}' "$OP_URL/__test/fault" > /dev/null
NB_OK=0
NB_HELD=0
for wave in 1 2 3; do
    nb_wrk "$WORK/idle.$wave.txt"
    perl "$TOP/bench/logins.pl" fire "$NGX_PORT" "$WORK/logins.$wave.txt" > "$WORK/fire.$wave.txt" &
    fire=$!
    until grep -q '^sent' "$WORK/fire.$wave.txt" 2>/dev/null; do sleep 0.01; done
    sleep 0.1
    nb_wrk "$WORK/busy.$wave.txt"
    wrk_end=$(date +%s.%N)
    wait "$fire"
    read -r _ ok total first last < <(grep '^done' "$WORK/fire.$wave.txt")
    NB_OK=$((NB_OK + ok))
    # every login still waited when the load ended: its answer came later
    NB_HELD=$((NB_HELD + $(awk -v f="$first" -v e="$wrk_end" 'BEGIN { print (f > e) ? 1 : 0 }')))
    echo "  wave $wave: $ok/$total logins completed; first answer $(awk -v f="$first" -v e="$wrk_end" 'BEGIN { printf "%.2f", f - e }') s after the load ended" >&2
done
curl -sf -d '{"tokenDelay":0}' "$OP_URL/__test/fault" > /dev/null
IDLE_P99=$(for w in 1 2 3; do p99 "$WORK/idle.$w.txt" | to_ms; done | median)
BUSY_P99=$(for w in 1 2 3; do p99 "$WORK/busy.$w.txt" | to_ms; done | median)
IDLE_RPS=$(for w in 1 2 3; do rps "$WORK/idle.$w.txt"; done | median)
BUSY_RPS=$(for w in 1 2 3; do rps "$WORK/busy.$w.txt"; done | median)

fi

if want memory; then
# --- 3. memory: a worker fed MEM_TOKENS distinct valid tokens (HS256, so
# minting and checking them is quick; the cached entry is the same as for any
# JWT) with oauth2_token_cache MEM_CACHE
MEM_PORT=$(free_port)
head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$WORK/hs.k"
printf '{"keys":[{"kty":"oct","kid":"mem","alg":"HS256","k":"%s"}]}\n' "$(cat "$WORK/hs.k")" > "$WORK/hs.jwks"
cat > "$WORK/mem.conf" <<NEOF
load_module $MODULE;
worker_processes 1;
error_log logs/mem-error.log notice;
pid logs/mem.pid;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$MEM_PORT;
        location /mem {
            oauth2_auth on;
            oauth2_on_failure 401;
            oauth2_jwks_file $WORK/hs.jwks;
            oauth2_algorithms HS256;
            oauth2_audience urn:test:api;
            oauth2_token_cache $MEM_CACHE;
            empty_gif;
        }
        location = /end { add_header X-End 1; empty_gif; }
    }
}
NEOF
"$NGINX" -p "$WORK/" -c "$WORK/mem.conf" -g 'daemon off;' 2>>"$WORK/logs/stderr.log" &
MEM_MASTER=$!
PIDS+=($MEM_MASTER)
wait_port "$MEM_PORT"
MEM_WORKER=$(pgrep -P "$MEM_MASTER" -f "nginx: worker" | head -1)
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$MEM_WORKER/status"; }
echo "memory: minting $MEM_TOKENS HS256 tokens..." >&2
node "$TOP/bench/mint.mjs" "$WORK/hs.k" "https://issuer.bench" "$MEM_TOKENS" HS256 > "$WORK/mem.txt"
expect 200 -H "Authorization: Bearer $(head -1 "$WORK/mem.txt")" "http://127.0.0.1:$MEM_PORT/mem"
expect 401 -H "Authorization: Bearer $(head -1 "$WORK/mem.txt")x" "http://127.0.0.1:$MEM_PORT/mem"
RSS0=$(rss_kb)
# every token once: when the file is exhausted the script writes mem.eof and
# asks for /end only; a second later (every answer is in) wrk is stopped and
# its done() prints the count of tokens sent, of 200s and of other answers
cat > "$WORK/mem.lua" <<LEOF
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args)
    f = io.open("$WORK/mem.txt")
    sent, ok, bad, eof, probed = 0, 0, 0, false, false
end
request = function()
    -- wrk calls request() once to check the script and sends nothing:
    -- that call must not use up a token
    if not probed then
        probed = true
        return wrk.format("GET", "/end")
    end
    local t = not eof and f:read("*l")
    if not t then
        if not eof then
            eof = true
            local d = io.open("$WORK/mem.eof", "w")
            d:write("eof\\n")
            d:close()
        end
        return wrk.format("GET", "/end")
    end
    sent = sent + 1
    return wrk.format("GET", "/mem", { ["Authorization"] = "Bearer " .. t })
end
response = function(status, headers, body)
    if headers["X-End"] == nil then
        if status == 200 then ok = ok + 1 else bad = bad + 1 end
    end
end
done = function(summary, latency, requests)
    for _, t in ipairs(threads) do
        io.write(string.format("MEM %d %d %d\\n", t:get("sent"), t:get("ok"), t:get("bad")))
    end
end
LEOF
echo "memory: sending them..." >&2
rm -f "$WORK/mem.eof"
wrk -t1 -c"$CONNECTIONS" -d900s -s "$WORK/mem.lua" "http://127.0.0.1:$MEM_PORT" > "$WORK/mem.wrk.txt" 2>&1 &
mem_wrk=$!
until [ -s "$WORK/mem.eof" ] || ! kill -0 "$mem_wrk" 2>/dev/null; do sleep 0.5; done
sleep 1
kill -INT "$mem_wrk" 2>/dev/null || true
wait "$mem_wrk" || true
RSS1=$(rss_kb)
read -r MEM_SENT MEM_OK MEM_BAD < <(awk '/^MEM / {print $2, $3, $4}' "$WORK/mem.wrk.txt")
kill "$MEM_MASTER" 2>/dev/null || true
fi
if want memory; then
# the cache charges each entry 1536 bytes plus twice its token's length
# (oauth2-core/src/cache.rs, entry_cost); mem.txt exists only when the
# memory part ran (under pipefail a missing file would end the script)
MEM_TOKEN_LEN=$(head -1 "$WORK/mem.txt" | tr -d '\n' | wc -c)
MEM_ENTRIES=$(awk -v s="$MEM_CACHE" -v l="$MEM_TOKEN_LEN" 'BEGIN { m = 1; if (s ~ /[kK]$/) m = 1024; if (s ~ /[mM]$/) m = 1048576; printf "%d", s * m / (1536 + 2 * l) }')
MEM_BOUND_KB=$(awk -v s="$MEM_CACHE" 'BEGIN { m = 1; if (s ~ /[kK]$/) m = 1024; if (s ~ /[mM]$/) m = 1048576; printf "%d", s * m / 1024 }')
fi

# --- the report
ran() { [[ " ${SCENARIOS[*]} " == *" $1 "* ]]; }
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? "met" : "missed" }'; }
{
if want throughput; then
    echo "| scenario | requests/s (median of $ROUNDS) | p99 latency | ratio to the ceiling | cost per request vs the ceiling (1/r − 1/C) |"
    echo "|---|---:|---:|---:|---:|"
    for s in "${SCENARIOS[@]}"; do
        printf '| %s | %.0f | %s ms | %s | %s |\n' "${LABEL[$s]}" "${RPS[$s]}" "${P99[$s]}" "$(pratio "$s")" "$(pcost "$s")"
    done
    echo
    echo "Targets (ratios from this run):"
    echo
    # a target line only when its scenarios ran (SCENARIOS may pick a few)
    # the cached paths: the profile first (the cost without the noise)
    declare -A PCOST
    for s in rs256 es256; do
        c=$(ceiling_of $s)
        [ -n "${SHARE[$s]:-}" ] && [ -n "${SHARE[$c]:-}" ] || continue
        PCOST[$s]=$(awk -v m="${SHARE[$s]}" -v mc="${SHARE[$c]}" -v l="${LIBC[$s]}" -v lc="${LIBC[$c]}" \
            -v t="${LDSO[$s]}" -v tc="${LDSO[$c]}" -v r="${PERF_RPS[$s]}" \
            'BEGIN { d = (m - mc) + (l - lc) + (t - tc); if (d < 0) d = 0; printf "%.2f", d / 100 * 1e6 / r }')
        echo "- ${LABEL[$s]}, profiled (perf, one uncounted run at $(printf '%.0f' "${PERF_RPS[$s]}") requests/s): the module's own"
        echo "  code ${SHARE[$s]} % of the worker's samples (${SHARE[$c]} % at its ceiling, whose location it only declines),"
        echo "  libc ${LIBC[$s]} % (${LIBC[$c]} %), ld.so's thread-local lookups ${LDSO[$s]} % (${LDSO[$c]} %):"
        echo "  ${PCOST[$s]} µs per request beyond the ceiling's"
    done
    for s in rs256 es256 rs256_multi; do
        ran $s && ran "$(ceiling_of $s)" || continue
        of="the ceiling"
        [ $s = es256 ] && of="the ceiling fed its headers (its token is shorter than the RS256 one)"
        if [ $s = rs256_multi ] || [ -z "$CACHED_IDS" ]; then
            r=$(pratio $s)
            echo "- ${LABEL[$s]}: $r of $of, $(pcost $s) per request (target ≥ 0.95: $(verdict "$r" 0.95))"
            continue
        fi
        r=$(ROUND_IDS=$CACHED_IDS pratio $s)
        # 1/r − 1/C round by round: mean, its standard error, median
        read -r mean se med < <(for id in $CACHED_IDS; do
                awk -v a="$(rps "$WORK/$s.$id.txt")" -v b="$(rps "$WORK/$(ceiling_of $s).$id.txt")" \
                    'BEGIN { if (a > 0 && b > 0) printf "%.4f\n", 1e6 / a - 1e6 / b }'
            done | sort -g | awk '{ x[NR] = $1; s += $1; ss += $1 * $1 }
                END { m = s / NR; v = ss / NR - m * m; if (v < 0) v = 0;
                      printf "%.2f %.2f %.2f\n", m, sqrt(v / (NR - 1)), x[int((NR + 1) / 2)] }')
        p=${PCOST[$s]:-}
        ok=$(awk -v r="$r" -v m="$mean" -v e="$se" -v p="${p:-x}" 'BEGIN {
            cost_ok = (p != "x") ? (p <= 0.5 && m - 2 * e <= 0.5) : (m <= 0.5);
            print (r >= 0.95 && cost_ok) ? "met" : "missed" }')
        echo "- ${LABEL[$s]}: $r of $of (median of ${CACHED_ROUNDS:-30} rounds of ${CACHED_DURATION:-2} s);"
        echo "  by throughput $mean ± $se µs per request (mean of the rounds' 1/r − 1/C ± its standard error; median $med µs),"
        echo "  by the profile ${p:-(not profiled)} µs (target ≥ 0.95 and ≤ 0.50 µs: $ok; the cost by the profile, the"
        echo "  throughput figure agreeing with it within two standard errors)"
    done
    if ran ceiling_again; then
        echo "- the noise of this run: the ceiling measured again later in each round reaches $(pratio ceiling_again) of"
        echo "  its first measurement (an A/A comparison, $(pcost ceiling_again)): differences of that size are the machine's"
    fi
    if ran cookie_shm; then
        r=$(pratio cookie_shm)
        echo "- ${LABEL[cookie_shm]}: $r of the plain ceiling (target 0.90: $(verdict "$r" 0.90)); its cookie is $(printf '%s' "$SHM_COOKIE" | wc -c) bytes"
    fi
    if ran cookie_redis; then
        r=$(pratio cookie_redis)
        echo "- ${LABEL[cookie_redis]}: $r of the plain ceiling (target 0.85: $(verdict "$r" 0.85)); its cookie is $(printf '%s' "$REDIS_COOKIE" | wc -c) bytes"
    fi
    if ran cookie_redis_miss && ran cookie_redis; then
        echo "- a Redis round trip on a per-worker cache miss (record read, request parked and woken, sealed"
        echo "  record opened): $(pcost cookie_redis_miss cookie_redis) per request beyond a cache hit (1/r − 1/r_hit);"
        echo "  the miss rate, $(printf '%.0f' "$(get cookie_redis_miss)") requests/s with $CONNECTIONS connections, is $(pratio cookie_redis_miss cookie_redis) of the hit rate"
    fi
    if ran cookie && ran ceiling_cookie; then
        r=$(pratio cookie)
        r2=$(pratio cookie ceiling_cookie)
        echo "- ${LABEL[cookie]}: $r2 of the ceiling fed the same request headers (target 0.90: $(verdict "$r2" 0.90));"
        echo "  $r of the plain ceiling, where nginx alone, with no auth, reaches $(pratio ceiling_cookie) with those headers"
    fi
    if ran miss; then
        echo "- RSA-2048 verifies/s on this machine (\`openssl speed rsa2048\`): V = $V; physical limit of"
        echo "  the cache-miss scenario 1/(1/C + 1/V) = $LIMIT requests/s (C = ceiling);"
        r=$(plimit miss "$V")
        echo "  cache-miss RS256 reaches $r of it (target 0.80: $(verdict "$r" 0.80); the compass: 0.90)"
        if [ -n "$VW" ]; then
            LW=$(awk -v c="$C" -v v="$VW" 'BEGIN { printf "%.0f", 1 / (1 / c + 1 / v) }')
            echo "  (the module's whole validation of a new RS256 token, outside nginx, runs at $VW/s;"
            echo "  with it 1/(1/C + 1/that) = $LW requests/s, which the scenario reaches $(plimit miss "$VW") of;"
            echo "  the bare signature check alone runs at $VBARE/s: the whole validation is $VQ of it, measured in turn, target ≥ 0.90)"
        fi
    fi
    if ran dpop && [ "$VE" != 0 ]; then
        LE=$(awk -v c="$C" -v v="$VE" 'BEGIN { printf "%.0f", 1 / (1 / c + 1 / v) }')
        r=$(plimit dpop "$VE")
        echo "- ECDSA P-256 verifies/s (\`openssl speed ecdsap256\`): V = $VE; the DPoP scenario's limit"
        echo "  1/(1/C + 1/V) = $LE requests/s; it reaches $r of it (target 0.80: $(verdict "$r" 0.80))"
    fi
    for w in w2 wauto; do
        ran ${w}_ceiling && ran ${w}_rs256 || continue
        r=$(pratio ${w}_rs256)
        echo "- ${LABEL[${w}_rs256]}: $r of its ceiling (target 0.95: $(verdict "$r" 0.95)), $(pcost ${w}_rs256) per request"
        if ran ${w}_miss && ran miss; then
            echo "  ${LABEL[${w}_miss]}: $(pratio ${w}_miss miss)× the one-worker miss rate"
        fi
    done
    if [ -n "$SHARED" ]; then
        # a shared-memory cache of validated tokens would save each worker
        # but the first its own verify of a token, and cost every hit a lock,
        # a copy out of the zone and cache lines moving between cores
        OWN_NS=$(awk '/each its own cache/ {print $(NF-1)}' <<< "$SHARED")
        SHM_NS=$(awk '/one shared locked cache/ {print $(NF-1)}' <<< "$SHARED")
        VERIFY_US=$(awk -v v="$V" 'BEGIN { printf "%.1f", 1e6 / v }')
        echo "- per-worker token caches or one shared cache (oauth2-core/examples/shared_lookup.rs, $(nproc) threads):"
        echo "  a hit in a worker's own cache $OWN_NS ns, in one shared locked cache $SHM_NS ns; one RSA-2048"
        echo "  verify $VERIFY_US µs. A shared cache saves (workers − 1) verifies per distinct token and costs"
        echo "  $((SHM_NS - OWN_NS)) ns more on every hit: it pays only for tokens used fewer than about"
        echo "  $(awk -v v="$VERIFY_US" -v d="$((SHM_NS - OWN_NS))" 'BEGIN { printf "%.0f", (d > 0) ? v * 1000 / d : 0 }') times per worker (per-worker caches kept)"
    fi
    if ran authreq && ran ap_oauth2; then
        for s in rs256 es256 cookie; do
            ran $s || continue
            a=$(pratio $s authreq)
            b=$(pratio $s ap_oauth2)
            echo "- ${LABEL[$s]}: ${a}× the auth_request floor (target 2.5: $(verdict "$a" 2.5)), ${b}× Apache mod_oauth2 (target 10: $(verdict "$b" 10))"
        done
        echo "- bounds of those two targets in this run: the ceiling itself (nginx with no auth at all) is"
        echo "  $(pratio ceiling authreq)× the auth_request floor and $(pratio ceiling ap_oauth2)× Apache mod_oauth2; no check inside nginx can exceed it"
    fi
    echo
fi
if want nonblocking; then
    echo "Non-blocking: $LOGINS logins at a time wait on a token endpoint that answers after 2 s"
    echo "(3 waves; every login was still waiting when the load ended in $NB_HELD of 3 waves;"
    echo "$NB_OK of $((3 * LOGINS)) logins then completed with a session):"
    echo
    echo "| public location, 1 s of wrk | requests/s | p99 latency |"
    echo "|---|---:|---:|"
    printf '| idle | %.0f | %s ms |\n' "$IDLE_RPS" "$IDLE_P99"
    printf '| %d logins waiting | %.0f | %s ms |\n' "$LOGINS" "$BUSY_RPS" "$BUSY_P99"
    echo
    r=$(ratio "$BUSY_P99" "$IDLE_P99")
    ok=$(awk -v r="$r" -v h="$NB_HELD" -v n="$NB_OK" -v t="$((3 * LOGINS))" 'BEGIN { print (r <= 2 && h == 3 && n == t) ? "met" : "missed" }')
    echo "p99 while they wait: ${r}× the idle p99 (target ≤ 2 with every login held and completed: $ok)."
    echo
fi
if want memory; then
    echo "Memory: one worker, \`oauth2_token_cache $MEM_CACHE\` ($MEM_ENTRIES entries of these $MEM_TOKEN_LEN-byte tokens), fed $MEM_TOKENS distinct"
    echo "valid tokens, one request each ($MEM_SENT sent, $MEM_OK answered 200, $MEM_BAD otherwise):"
    echo "worker RSS $RSS0 KiB before (the fixed overhead), $RSS1 KiB after: grew $((RSS1 - RSS0)) KiB"
    ok=$( [ $((RSS1 - RSS0)) -le "$MEM_BOUND_KB" ] && [ "$MEM_OK" = "$MEM_TOKENS" ] && echo met || echo missed)
    echo "against a bound of $MEM_BOUND_KB KiB (target: growth ≤ bound, every token accepted: $ok)."
    echo
fi
    echo "The nginx ceiling, the auth_request floor and the Apache peers get the same request as the"
    echo "RS256 scenario (with its Authorization header); the cookie scenario is also compared with the"
    echo "ceiling fed its Cookie header. wrk -t1 -c$CONNECTIONS -d${DURATION}s after a ${WARMUP} s warm-up of each, one nginx worker, one Apache"
    echo "process (event MPM, 64 threads), all on 127.0.0.1; ratios and costs are each round's run against the"
    echo "ceiling's run of the same round, the median of the $ROUNDS rounds; $HALT_POLL_NOTE;"
    echo "$(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -sr), $(date -u +%Y-%m-%d),"
    echo "this CPU's \`openssl speed\`: $(openssl speed -seconds 1 rsa2048 2>/dev/null | awk '/^rsa 2048/ {printf "%.0f RSA-2048 verifies/s", $NF}'), $(openssl speed -seconds 1 ecdsap256 2>/dev/null | awk '/256 bits ecdsa/ {printf "%.0f ECDSA P-256 verifies/s", $NF}'),"
    echo "$("$NGINX" -v 2>&1 | sed 's/.*: //'), $(/usr/sbin/apache2 -v | awk -F': ' '/version/ {print $2}'),"
    echo "mod_oauth2 $(dpkg-query -W -f='${Version}' libapache2-mod-oauth2), mod_auth_openidc $(dpkg-query -W -f='${Version}' libapache2-mod-auth-openidc)."
} > "$WORK/table.md"
cat "$WORK/table.md"
if [ "${SCENARIOS[*]}" = "$ALL_SCENARIOS" ] && [ "$PARTS" = "throughput nonblocking memory" ]; then
    {
        echo "# Benchmark results"
        echo
        echo "Produced by \`bench/run.sh\` (all numbers from one run; ratios against the ceiling measured in the same run)."
        echo
        cat "$WORK/table.md"
    } > "$TOP/bench/RESULTS.md"
fi
