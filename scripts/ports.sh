# Shared by scripts/demo.sh and bench/lib.sh (source it).

# port_open PORT: does something listen on 127.0.0.1:PORT?
port_open() {
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null
}

# wait_port PORT: wait up to 10 s for 127.0.0.1:PORT to listen
wait_port() {
    for _ in $(seq 1 200); do
        port_open "$1" && return 0
        sleep 0.05
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}
