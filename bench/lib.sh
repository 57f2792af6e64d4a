# Shared by the bench/ scripts: build, start the test provider and nginx on
# free loopback ports, get a bearer token and a session cookie, stop
# everything on exit. Source it; it sets TOP, NGINX, MODULE, WORK, OP_URL,
# OP_PORT, NGX_PORT, TOKEN, COOKIE and defines start_nginx / stop_all.

set -euo pipefail
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROFILE=${PROFILE:-release}
WORK=${WORK:-$(mktemp -d /tmp/oauth2-bench.XXXXXX)}
PIDS=()
source "$TOP/scripts/ports.sh"

stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    restore_halt_poll
}
trap stop_all EXIT

# Idle vCPUs of a guest that halts at once (haltpoll with guest_halt_poll_ns
# 0, as this VM boots) cost the waker a VM exit of 7-16 µs per wake-up; at a
# few thousand requests/s every response wakes wrk's idle vCPU and that cost
# lands on nginx's. While the benchmarks run, an idle vCPU polls for up to
# HALT_POLL_NS (default 200 µs) before halting, as a latency-tuned host
# does; HALT_POLL_NS=keep leaves the machine as it is. Restored on exit.
HALT_POLL_FILE=/sys/module/haltpoll/parameters/guest_halt_poll_ns
HALT_POLL_WAS=""
HALT_POLL_NOTE="the machine's idle polling as it was"
set_halt_poll() {
    local ns=${HALT_POLL_NS:-200000}
    [ "$ns" = keep ] && return 0
    if [ -w "$HALT_POLL_FILE" ]; then
        HALT_POLL_WAS=$(cat "$HALT_POLL_FILE")
        echo "$ns" > "$HALT_POLL_FILE"
        HALT_POLL_NOTE="idle vCPUs polling up to $((ns / 1000)) µs before halting (haltpoll guest_halt_poll_ns $ns; $HALT_POLL_WAS before the run)"
    else
        HALT_POLL_NOTE="the machine's idle polling as it was ($HALT_POLL_FILE not writable or absent)"
    fi
}
restore_halt_poll() {
    if [ -n "$HALT_POLL_WAS" ]; then
        echo "$HALT_POLL_WAS" > "$HALT_POLL_FILE" || true
        HALT_POLL_WAS=""
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

build() {
    WITH_BENCH=1 "$TOP/scripts/deps.sh"
    local flags=""
    [ "$PROFILE" = release ] && flags="--release"
    (cd "$TOP" && cargo build $flags -p ngx_http_oauth2_module >&2)
    NGINX=$(ls -t "$TOP"/target/"$PROFILE"/build/nginx-sys-*/out/objs/nginx | head -1)
    MODULE="$TOP/target/$PROFILE/libngx_http_oauth2_module.so"
}

# start_op [EXTRA op.mjs ARGS...]
start_op() {
    OP_PORT=$(free_port)
    NGX_PORT=${NGX_PORT:-$(free_port)}
    OP_URL="http://127.0.0.1:$OP_PORT"
    mkdir -p "$WORK/op"
    node "$TOP/t/op/op.mjs" --port "$OP_PORT" --state "$WORK/op" \
        --redirect-uri "http://127.0.0.1:$NGX_PORT/oauth2/callback" "$@" > "$WORK/op.log" 2>&1 &
    PIDS+=($!)
    wait_port "$OP_PORT"
    head -c 32 /dev/urandom | base64 > "$WORK/cookie.keys"
}

# start_nginx CONF_FILE: run nginx (master + workers) with that configuration
start_nginx() {
    mkdir -p "$WORK/logs"
    "$NGINX" -p "$WORK/" -c "$1" -g 'daemon off;' 2>>"$WORK/logs/stderr.log" &
    NGX_PID=$!
    PIDS+=($NGX_PID)
    wait_port "$NGX_PORT"
}

# gateway_conf WORKERS [EXTRA_HTTP_LINES]: nginx.conf with an API on /api/
# (bearer, 401), a browser app on /app/ (session) and the callback
gateway_conf() {
    cat > "$WORK/nginx.conf" <<EOF
load_module $MODULE;
worker_processes $1;
error_log logs/error.log notice;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    oauth2_issuer $OP_URL;
    oauth2_client_id nginx;
    oauth2_client_secret nginx-secret;
    oauth2_audience urn:test:api;
    oauth2_cookie_secret_file $WORK/cookie.keys;
    oauth2_cookie_secure off;
    ${2:-}
    server {
        listen 127.0.0.1:$NGX_PORT;
        location /api/ { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
        location /app/ { oauth2_auth on; empty_gif; }
        location = /oauth2/callback { oauth2_callback; }
    }
}
EOF
}

get_token() {
    curl -sf -u api-client:api-secret -d grant_type=client_credentials -d scope=api:read \
        -d "resource=${1:-urn:test:api}" "$OP_URL/token" | sed 's/.*"access_token":"\([^"]*\)".*/\1/'
}

# get_cookie [PATH [NAME]]: a session cookie header value, from a full
# browser login through nginx at PATH (default /app/), cookie NAME (default
# oauth2_session)
get_cookie() {
    perl -I"$TOP/t/lib" -MOAuth2Browser -e '
        my ($op, $base, $path, $name) = @ARGV;
        my $b = OAuth2Browser->new(op => $op);
        my $r = $b->login("$base$path", "bench-user");
        die "login failed: $r->{status}\n" unless $r->{status} == 302;
        print join("; ", map { "$_=" . $b->cookie($_) } grep { /^\Q$name\E(_\d+)?$/ } $b->cookie_names), "\n";
    ' "$OP_URL" "http://127.0.0.1:$NGX_PORT" "${1:-/app/}" "${2:-oauth2_session}"
}

worker_pids() {
    pgrep -P "$NGX_PID" -f "nginx: worker" || true
}
