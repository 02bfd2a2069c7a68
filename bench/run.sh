#!/usr/bin/env bash
# omnigate benchmark: one run, one table.
#
# Installs wrk and nginx (Debian) if missing, builds omnigate in release mode, starts the example
# backends (`omnigate backends`), nginx and omnigate on free 127.0.0.1 ports, drives each scenario
# with wrk (same threads/connections for every row, warm-up first), samples omnigate's RSS and
# prints a markdown table plus the targets of the benchmark issue. See bench/README.md.
#
# Environment (all optional):
#   BENCH_DURATION=10s      measured wrk run per row
#   BENCH_WARMUP=2s         wrk warm-up per row (same settings, result discarded)
#   BENCH_CONNECTIONS=64    wrk -c
#   BENCH_THREADS=2         wrk -t
#   BENCH_WORKERS=$(nproc)  nginx worker_processes (omnigate's tokio runtime uses nproc threads)
#   BENCH_PORT_BASE=20051   first port tried; five free ports from here are used (below Linux's
#                           ephemeral range, where other processes' outgoing connections and
#                           their TIME-WAIT sockets can hold a port and make a bind fail)
#   BENCH_ROWS="direct nginx proxy get post gql slow gql3"   which rows to run, in this order
#   BENCH_SLOW_MS=20        delay of the Authors backend (GraphQL cross-service rows)
#   BENCH_BACKEND_THREADS=1 tokio worker threads of the example backends process
#   BENCH_ROUNDS=1          run all rows this many times, interleaved; report each row's median
#   BENCH_COUNT_DURATION=3s extra wrk run per proxy row with `perf stat` attached (instructions
#                           column); kept apart because counting slows the counted process
#   BENCH_SKIP_BUILD=1      use the existing release binary
#   BENCH_KEEP=1            keep the temp dir (configs, logs, raw wrk output)
#   BENCH_STRICT=1          exit 1 when a target is missed
#   BENCH_PERF=1            record `perf record --call-graph dwarf` of omnigate during each omnigate
#                           row into the (kept) temp dir: $TMP/<row>.perf.data
#   BENCH_OMNIGATE_ENV="K=V ..." extra environment for the omnigate process only (e.g.
#                           GLIBC_TUNABLES=..., RUST_LOG=...)
#   BENCH_HOLD=1            after the table, keep everything running until Ctrl-C (for profiling)
#   BENCH_CALLGRIND=1       after the measured rows, count omnigate's user-space instructions per
#                           request under valgrind's callgrind (installs valgrind if missing):
#                           deterministic where `perf` has no hardware counters (most VMs)
#   BENCH_CALLGRIND_DURATION=5s  wrk run per row under callgrind (wrk -t1 -c4)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
WORKERS=${BENCH_WORKERS:-$(nproc)}
PORT_BASE=${BENCH_PORT_BASE:-20051}
ROWS=${BENCH_ROWS:-direct nginx proxy get post gql slow gql3}
# The Authors backend answers after this many ms (the "slowest service" of the GraphQL rows).
SLOW_MS=${BENCH_SLOW_MS:-20}
ROUNDS=${BENCH_ROUNDS:-1}
# Length of the separate wrk run during which instructions are counted (see run_row).
COUNT_DURATION=${BENCH_COUNT_DURATION:-3s}
CALLGRIND=${BENCH_CALLGRIND:-0}
CALLGRIND_DURATION=${BENCH_CALLGRIND_DURATION:-5s}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_tools() {
    local missing=()
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if [ "$CALLGRIND" = 1 ]; then
        command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]} with apt-get"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        # Debian's package starts a system nginx on port 80 where an init system runs; the
        # benchmark starts its own, so leave the system one as the package set it up.
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

build() {
    cd "$ROOT"
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    case $target in /*) ;; *) target=$ROOT/$target ;; esac
    OMNIGATE=$target/release/omnigate
    if [ "${BENCH_SKIP_BUILD:-0}" = 1 ] && [ -x "$OMNIGATE" ]; then
        log "using existing $OMNIGATE"
    else
        log "cargo build --release (target dir: $target)"
        cargo build --release --quiet --bin omnigate
    fi
    [ -x "$OMNIGATE" ] || die "no binary at $OMNIGATE"
}

# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
PIDS=()
TMP=$(mktemp -d "${TMPDIR:-/tmp}/omnigate-bench.XXXXXX")

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Give each process up to 5 s to exit, then force it.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ] || [ "${BENCH_PERF:-0}" = 1 ] \
        || { [ $status -ne 0 ] && [ $status -ne 130 ] && [ $status -ne 143 ]; }; then
        log "logs and configs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Any TCP socket (listening, connected or TIME-WAIT) on this local port: a bind could fail.
port_taken() {
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
    else
        port_in_use "$1"
    fi
}

# free_port VAR: the first port from PORT_BASE nobody uses and not chosen yet (sets VAR; not
# called in $(...) so that CHOSEN survives).
CHOSEN=" "
free_port() {
    local port=$PORT_BASE
    while port_taken "$port" || [[ $CHOSEN == *" $port "* ]]; do
        port=$((port + 1))
        [ $port -lt $((PORT_BASE + 500)) ] || die "no free port from $PORT_BASE"
    done
    CHOSEN+="$port "
    printf -v "$1" '%s' "$port"
}

# wait_port PORT PID NAME LOG [SECONDS]: until PORT accepts connections (30 s by default).
wait_port() {
    local port=$1 pid=$2 name=$3 logfile=$4 seconds=${5:-30}
    for _ in $(seq $((seconds * 10))); do
        port_in_use "$port" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$logfile" >&2 || true
            die "$name exited before listening on $port"
        fi
        sleep 0.1
    done
    cat "$logfile" >&2 || true
    die "$name is not listening on $port after $seconds s"
}

start_backends() {
    free_port P_LIBRARY
    free_port P_AUTHORS
    free_port P_HTTP
    RUST_LOG=warn "$OMNIGATE" backends --threads "${BENCH_BACKEND_THREADS:-1}" --library-port "$P_LIBRARY" \
        --authors-port "$P_AUTHORS" --http-port "$P_HTTP" --authors-delay-ms "$SLOW_MS" >"$TMP/backends.log" 2>&1 &
    BACKENDS_PID=$!
    PIDS+=("$BACKENDS_PID")
    for port in "$P_LIBRARY" "$P_AUTHORS" "$P_HTTP"; do
        wait_port "$port" "$BACKENDS_PID" backends "$TMP/backends.log"
    done
}

start_nginx() {
    free_port P_NGINX
    mkdir -p "$TMP/nginx/logs"
    # Same work as omnigate's proxy: HTTP/1.1 keep-alive to the backend, X-Forwarded-* headers.
    # keepalive_requests is raised on both sides because omnigate (hyper) never closes a
    # keep-alive connection after N requests; nginx's default of 1000 would make it reconnect.
    cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes $WORKERS;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    upstream backend {
        server 127.0.0.1:$P_HTTP;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$P_NGINX;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }
}
EOF
    "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" \
        >"$TMP/nginx/logs/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_port "$P_NGINX" "$NGINX_PID" nginx "$TMP/nginx/logs/error.log"
}

start_omnigate() {
    free_port P_OMNIGATE
    cat >"$TMP/omnigate.yaml" <<EOF
listen: 127.0.0.1:$P_OMNIGATE
grpc:
  - name: library
    url: http://127.0.0.1:$P_LIBRARY
  - name: authors
    url: http://127.0.0.1:$P_AUTHORS
http:
  - name: reviews
    prefix: /reviews
    url: http://127.0.0.1:$P_HTTP
graphql:
  http_fields:
    - on: Query
      field: reviews
      type: "[Review!]"
      upstream: reviews
      path: /reviews?book={book}
      arguments: { book: "String!" }
      select: reviews
  sdl: [$ROOT/schema/reviews.graphql]
EOF
    env ${BENCH_OMNIGATE_ENV:-} "$OMNIGATE" run --config "$TMP/omnigate.yaml" >"$TMP/omnigate.log" 2>&1 &
    OMNIGATE_PID=$!
    PIDS+=("$OMNIGATE_PID")
    wait_port "$P_OMNIGATE" "$OMNIGATE_PID" omnigate "$TMP/omnigate.log"
}

# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# CPU ticks (user + system) of a process and its direct children (nginx's workers).
cpu_ticks() {
    local total=0 pid
    for pid in "$@" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        [ -r "/proc/$pid/stat" ] || continue
        # Fields after the command name (which may contain spaces): utime is the 12th, stime the 13th.
        total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# Track omnigate's highest VmRSS while a row runs.
RSS_MAX_KB=0
rss_sampler() {
    local max=0 now
    while kill -0 "$OMNIGATE_PID" 2>/dev/null; do
        now=$(status_kb "$OMNIGATE_PID" VmRSS)
        [ "${now:-0}" -gt "$max" ] && max=$now && echo "$max" >"$TMP/rss.max"
        sleep 0.2
    done
}

# Precheck: one request must succeed before any load is sent.
precheck() {
    local name=$1 method=$2 url=$3 body=${4:-}
    local code
    if [ -n "$body" ]; then
        code=$(curl -sS -o "$TMP/precheck.out" -w '%{http_code}' -X "$method" \
            -H 'content-type: application/json' --data-binary "@$body" "$url")
    else
        code=$(curl -sS -o "$TMP/precheck.out" -w '%{http_code}' -X "$method" "$url")
    fi
    case $code in
        2??) ;;
        *) cat "$TMP/precheck.out" >&2; die "$name: $method $url answered $code" ;;
    esac
    # GraphQL answers its errors with 200: a benchmark of errors would measure nothing.
    if grep -q '"errors"' "$TMP/precheck.out"; then
        cat "$TMP/precheck.out" >&2
        die "$name: $method $url answered GraphQL errors"
    fi
}

# wrk script for a row: optional request setup + the shared report hook.
make_script() {
    local out=$1 kind=$2
    : >"$out"
    local body=""
    case $kind in
        post) body=$BENCH_DIR/book.json ;;
        gql) body=$BENCH_DIR/gql-one.json ;;
        gql3) body=$BENCH_DIR/gql-three.json ;;
    esac
    if [ -n "$body" ]; then
        {
            echo 'wrk.method = "POST"'
            echo 'wrk.headers["Content-Type"] = "application/json"'
            printf 'wrk.body = [==[%s]==]\n' "$(cat "$body")"
        } >>"$out"
    fi
    cat "$BENCH_DIR/report.lua" >>"$out"
}

# Instruction counts (user, kernel) of the proxy during a row, where perf works here: unlike
# req/s and CPU time they barely move when other processes share the machine.
PERF_OK=0
# `perf stat` exits 0 even where the counter is "<not supported>" (virtual machines without a PMU),
# so the probe asks for a number in the first column.
if command -v perf >/dev/null 2>&1 \
    && perf stat -x, -e instructions:u true 2>&1 >/dev/null | grep -q '^[0-9][0-9]*,'; then
    PERF_OK=1
fi

# run_row ROW ROUND LABEL URL KIND(get|post) PROXY_PID(or -): results go to the arrays below,
# keyed ROW.ROUND.
declare -A RPS P50 P99 ERRS PROXY_CPU PROXY_INSTR BACKEND_CPU RSS LABEL PICK
run_row() {
    local row=$1 round=$2 label=$3 url=$4 kind=$5 proxy_pid=$6
    local key=$row.$round
    local script=$TMP/$row.lua
    make_script "$script" "$kind"
    LABEL[$row]=$label
    local tag=$label
    [ "$ROUNDS" = 1 ] || tag="$label [round $round]"
    log "$tag: warm-up $WARMUP"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$script" "$url" >"$TMP/$key.warmup.txt" 2>&1 \
        || die "wrk failed (warm-up of $key): $(cat "$TMP/$key.warmup.txt")"

    local sampler=""
    if [ "$proxy_pid" = "$OMNIGATE_PID" ]; then
        rm -f "$TMP/rss.max"
        rss_sampler &
        sampler=$!
    fi
    local proxy_pids="" proxy_before=0 backend_before
    if [ "$proxy_pid" != - ]; then
        proxy_pids=$(echo "$proxy_pid" $(cat /proc/"$proxy_pid"/task/*/children 2>/dev/null) | tr ' ' ',')
        proxy_before=$(cpu_ticks "$proxy_pid")
    fi
    backend_before=$(cpu_ticks "$BACKENDS_PID")

    local perf=""
    if [ "${BENCH_PERF:-0}" = 1 ] && [ "$proxy_pid" = "$OMNIGATE_PID" ]; then
        perf record -q --call-graph dwarf,16384 -F 499 -p "$OMNIGATE_PID" -o "$TMP/$key.perf.data" \
            >"$TMP/$key.perf.log" 2>&1 &
        perf=$!
    fi
    log "$tag: measuring $DURATION"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$script" "$url" \
        >"$TMP/$key.txt" 2>&1 || die "wrk failed ($key): $(cat "$TMP/$key.txt")"

    if [ -n "$perf" ]; then
        kill -INT "$perf" 2>/dev/null || true
        wait "$perf" 2>/dev/null || true
    fi
    local proxy_after=0 backend_after
    [ "$proxy_pid" = - ] || proxy_after=$(cpu_ticks "$proxy_pid")
    backend_after=$(cpu_ticks "$BACKENDS_PID")

    # Instructions are counted in a pass of their own, after the measured one: counters
    # attached to a process slow it (in a VM every context switch of a counted thread writes
    # the PMU's registers through the hypervisor), by up to a third for omnigate's gRPC rows,
    # so the req/s, latency and CPU columns above come from a run without them.
    if [ "$PERF_OK" = 1 ] && [ -n "$proxy_pids" ]; then
        perf stat -x, -e instructions:u,instructions:k -p "$proxy_pids" -o "$TMP/$key.instr" -- \
            wrk -t"$THREADS" -c"$CONNECTIONS" -d"$COUNT_DURATION" -s "$script" "$url" \
            >"$TMP/$key.count.txt" 2>&1 || die "wrk failed ($key, counting): $(cat "$TMP/$key.count.txt")"
    fi
    if [ -n "$sampler" ]; then
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        RSS[$key]=$(cat "$TMP/rss.max" 2>/dev/null || echo 0)
        [ "${RSS[$key]}" -gt "$RSS_MAX_KB" ] && RSS_MAX_KB=${RSS[$key]}
    fi

    local line
    line=$(grep '^BENCH_RESULT ' "$TMP/$key.txt") || die "no result from wrk ($key): $(cat "$TMP/$key.txt")"
    local requests duration_us p50_us p99_us status connect read write timeout
    requests=$(field "$line" requests)
    duration_us=$(field "$line" duration_us)
    p50_us=$(field "$line" p50_us)
    p99_us=$(field "$line" p99_us)
    status=$(field "$line" status)
    connect=$(field "$line" connect)
    read=$(field "$line" read)
    write=$(field "$line" write)
    timeout=$(field "$line" timeout)

    RPS[$key]=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
    P50[$key]=$p50_us
    P99[$key]=$p99_us
    ERRS[$key]=$((status + connect + read + write + timeout))
    PROXY_CPU[$key]=-
    PROXY_INSTR[$key]=-
    if [ "$proxy_pid" != - ]; then
        PROXY_CPU[$key]=$(awk -v t=$((proxy_after - proxy_before)) -v u="$TICK_US" -v r="$requests" \
            'BEGIN { printf "%.1f µs", r ? t * u / r : 0 }')
        local counted
        # No count file where perf cannot count (grep exits 2, which set -e -o pipefail would end on).
        counted=$( (grep -s '^BENCH_RESULT ' "$TMP/$key.count.txt" || true) | tr ' ' '\n' \
            | awk -F= '$1 == "requests" { print $2 }')
        if [ -s "$TMP/$key.instr" ] && [ -n "$counted" ]; then
            PROXY_INSTR[$key]=$(awk -F, -v r="$counted" '
                $3 ~ /^instructions:u/ && $1 ~ /^[0-9]+$/ { u = $1 + 0 }
                $3 ~ /^instructions:k/ && $1 ~ /^[0-9]+$/ { k = $1 + 0 }
                END { if (r > 0 && u > 0) printf "%.0fk + %.0fk", u / r / 1000, k / r / 1000; else printf "-" }' \
                "$TMP/$key.instr")
        fi
    fi
    BACKEND_CPU[$key]=$(awk -v t=$((backend_after - backend_before)) -v u="$TICK_US" -v r="$requests" \
        'BEGIN { printf "%.1f µs", r ? t * u / r : 0 }')
    log "$tag: ${RPS[$key]} req/s, p50 ${p50_us} us, p99 ${p99_us} us, errors ${ERRS[$key]}"
}

# count_under_callgrind: a second omnigate (same config, its own port) under valgrind's
# callgrind, started after the measured rows so that it takes no CPU from them. Per omnigate row:
# a warm-up, then the counters are zeroed, wrk runs CALLGRIND_DURATION at low concurrency
# (callgrind runs one thread at a time, ~50x slower), and the dump's total over wrk's request
# count goes to CG_INSTR. User space only; fewer requests in flight than in the measured run
# means less batching on the HTTP/2 side, so compare these counts with each other, not with
# the perf column.
declare -A CG_INSTR
count_under_callgrind() {
    local port cg_pid row dump total requests
    free_port P_CALLGRIND
    port=$P_CALLGRIND
    sed "s/^listen: .*/listen: 127.0.0.1:$port/" "$TMP/omnigate.yaml" >"$TMP/omnigate-callgrind.yaml"
    valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out" \
        "$OMNIGATE" run --config "$TMP/omnigate-callgrind.yaml" >"$TMP/omnigate-callgrind.log" 2>&1 &
    cg_pid=$!
    PIDS+=("$cg_pid")
    wait_port "$port" "$cg_pid" "omnigate under callgrind" "$TMP/omnigate-callgrind.log" 120
    for row in $ROWS; do
        row "$row" "$port"
        [ "$ROW_PROXY" = "$OMNIGATE_PID" ] || continue
        make_script "$TMP/$row.lua" "$ROW_KIND"
        log "$ROW_LABEL: counting instructions under callgrind ($CALLGRIND_DURATION)"
        wrk -t1 -c4 -d2s -s "$TMP/$row.lua" "$ROW_URL" >"$TMP/$row.callgrind-warmup.txt" 2>&1 \
            || die "wrk failed (callgrind warm-up of $row): $(cat "$TMP/$row.callgrind-warmup.txt")"
        callgrind_control -z "$cg_pid" >/dev/null 2>&1
        wrk -t1 -c4 -d"$CALLGRIND_DURATION" -s "$TMP/$row.lua" "$ROW_URL" >"$TMP/$row.callgrind.txt" 2>&1 \
            || die "wrk failed (callgrind run of $row): $(cat "$TMP/$row.callgrind.txt")"
        callgrind_control -d "$cg_pid" >/dev/null 2>&1
        dump=$(ls -t "$TMP"/callgrind.out.* 2>/dev/null | head -1)
        total=$(awk '/^summary:/ { print $2 }' "$dump" 2>/dev/null)
        requests=$(field "$(grep '^BENCH_RESULT ' "$TMP/$row.callgrind.txt" || true)" requests)
        if [ -n "$total" ] && [ "${requests:-0}" -gt 0 ]; then
            CG_INSTR[$row]=$(awk -v t="$total" -v r="$requests" 'BEGIN { printf "%.1fk", t / r / 1000 }')
        fi
    done
}

# pick_median ROW: the round whose req/s is the median (the lower one for an even count).
pick_median() {
    local row=$1 round
    PICK[$row]=$(for round in $(seq "$ROUNDS"); do echo "${RPS[$row.$round]} $round"; done \
        | sort -n | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) { print $2 }')
}

field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }

ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f MB", kb / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
install_tools
build
start_backends
start_nginx
start_omnigate
RSS_IDLE_KB=$(status_kb "$OMNIGATE_PID" VmRSS)
log "ports: library $P_LIBRARY, authors $P_AUTHORS, http $P_HTTP, nginx $P_NGINX, omnigate $P_OMNIGATE"

BOOK_PATH=/v1/shelves/1/books/1
POST_PATH=/v1/shelves/1/books
precheck direct GET "http://127.0.0.1:$P_HTTP/reviews/1"
precheck nginx GET "http://127.0.0.1:$P_NGINX/reviews/1"
precheck proxy GET "http://127.0.0.1:$P_OMNIGATE/reviews/1"
precheck get GET "http://127.0.0.1:$P_OMNIGATE$BOOK_PATH"
precheck post POST "http://127.0.0.1:$P_OMNIGATE$POST_PATH" "$BENCH_DIR/book.json"
precheck gql POST "http://127.0.0.1:$P_OMNIGATE/graphql" "$BENCH_DIR/gql-one.json"
precheck gql3 POST "http://127.0.0.1:$P_OMNIGATE/graphql" "$BENCH_DIR/gql-three.json"

# row ROW OMNIGATE_PORT: sets ROW_LABEL, ROW_URL, ROW_KIND and ROW_PROXY (the pid whose CPU is
# the "proxy" column, or -) for one row of the table.
row() {
    local port=$2
    case $1 in
        direct) ROW_LABEL="direct → HTTP backend (GET /reviews/1)"
            ROW_URL=http://127.0.0.1:$P_HTTP/reviews/1 ROW_KIND=get ROW_PROXY=- ;;
        nginx) ROW_LABEL="nginx → HTTP backend (GET /reviews/1)"
            ROW_URL=http://127.0.0.1:$P_NGINX/reviews/1 ROW_KIND=get ROW_PROXY=$NGINX_PID ;;
        proxy) ROW_LABEL="omnigate → HTTP backend (GET /reviews/1)"
            ROW_URL=http://127.0.0.1:$port/reviews/1 ROW_KIND=get ROW_PROXY=$OMNIGATE_PID ;;
        get) ROW_LABEL="omnigate REST GET → gRPC (GET $BOOK_PATH)"
            ROW_URL=http://127.0.0.1:$port$BOOK_PATH ROW_KIND=get ROW_PROXY=$OMNIGATE_PID ;;
        post) ROW_LABEL="omnigate REST POST 1 KB JSON → gRPC (POST $POST_PATH)"
            ROW_URL=http://127.0.0.1:$port$POST_PATH ROW_KIND=post ROW_PROXY=$OMNIGATE_PID ;;
        gql) ROW_LABEL="omnigate GraphQL query → one gRPC call (getBook)"
            ROW_URL=http://127.0.0.1:$port/graphql ROW_KIND=gql ROW_PROXY=$OMNIGATE_PID ;;
        slow) ROW_LABEL="omnigate REST GET → Authors slowed ${SLOW_MS} ms (GET /v1/authors/1)"
            ROW_URL=http://127.0.0.1:$port/v1/authors/1 ROW_KIND=get ROW_PROXY=$OMNIGATE_PID ;;
        gql3) ROW_LABEL="omnigate GraphQL query across Library + Authors (slowed) + HTTP reviews"
            ROW_URL=http://127.0.0.1:$port/graphql ROW_KIND=gql3 ROW_PROXY=$OMNIGATE_PID ;;
        *) die "unknown row '$1' in BENCH_ROWS" ;;
    esac
}
for row in $ROWS; do row "$row" "$P_OMNIGATE"; done # an unknown row fails before any run

for round in $(seq "$ROUNDS"); do
    for row in $ROWS; do
        row "$row" "$P_OMNIGATE"
        run_row "$row" "$round" "$ROW_LABEL" "$ROW_URL" "$ROW_KIND" "$ROW_PROXY"
    done
done
for row in $ROWS; do pick_median "$row"; done
RSS_HWM_KB=$(status_kb "$OMNIGATE_PID" VmHWM)
kill -0 "$OMNIGATE_PID" 2>/dev/null || die "omnigate died during the run: $(tail -20 "$TMP/omnigate.log")"
[ "$CALLGRIND" = 1 ] && count_under_callgrind

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
at() { local -n table=$1; echo "${table[$2.${PICK[$2]}]:-}"; }
NGINX_RPS=0
[ -z "${PICK[nginx]:-}" ] || NGINX_RPS=$(at RPS nginx)
echo
echo "## omnigate benchmark"
echo
rounds_note=""
[ "$ROUNDS" = 1 ] || rounds_note=" Each row: the median (by req/s) of $ROUNDS rounds."
echo "$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), load generator on the same machine;" \
    "wrk -t$THREADS -c$CONNECTIONS, ${WARMUP} warm-up + ${DURATION} per row; nginx worker_processes $WORKERS;" \
    "omnigate $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | awk '{ print $1, $2 }').$rounds_note"
echo
cg_head="" cg_rule=""
[ "$CALLGRIND" = 1 ] && cg_head=" omnigate instructions/req (callgrind, user) |" cg_rule="---:|"
echo "| scenario | req/s | p50 | p99 | errors | vs nginx | proxy CPU/req | proxy instructions/req (user + kernel) | backends CPU/req | omnigate RSS (max) |$cg_head"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|$cg_rule"
for row in $ROWS; do
    rss=-
    [ -z "$(at RSS "$row")" ] || rss=$(mb "$(at RSS "$row")")
    cg=""
    [ "$CALLGRIND" = 1 ] && cg=" ${CG_INSTR[$row]:--} |"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |%s\n' "${LABEL[$row]}" "$(at RPS "$row")" \
        "$(ms "$(at P50 "$row")")" "$(ms "$(at P99 "$row")")" "$(at ERRS "$row")" \
        "$(ratio "$(at RPS "$row")" "$NGINX_RPS")" "$(at PROXY_CPU "$row")" "$(at PROXY_INSTR "$row")" \
        "$(at BACKEND_CPU "$row")" "$rss" "$cg"
done
echo
under_load="no omnigate row ran"
[ "$RSS_MAX_KB" -gt 0 ] && under_load="$(mb "$RSS_MAX_KB") highest VmRSS sampled under load"
echo "omnigate RSS: $(mb "$RSS_IDLE_KB") idle after start, $under_load, $(mb "$RSS_HWM_KB") peak (VmHWM)."
echo

MISSED=0
target() {
    local name=$1 ok=$2 detail=$3
    if [ "$ok" = 1 ]; then echo "- [x] $name: $detail"; else echo "- [ ] $name: $detail (MISSED)"; MISSED=1; fi
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? 1 : 0 }'; }
echo "Targets:"
if [ -n "${PICK[proxy]:-}" ] && [ "$NGINX_RPS" -gt 0 ]; then
    target "omnigate proxy ≥ 1.0× nginx req/s" "$(ge "$(at RPS proxy)" "$NGINX_RPS")" \
        "$(ratio "$(at RPS proxy)" "$NGINX_RPS")×"
fi
if [ -n "${PICK[get]:-}" ] && [ "$NGINX_RPS" -gt 0 ]; then
    target "omnigate REST GET → gRPC ≥ 0.7× nginx req/s" "$(ge "$(at RPS get)" "$(awk -v b="$NGINX_RPS" 'BEGIN { print 0.7 * b }')")" \
        "$(ratio "$(at RPS get)" "$NGINX_RPS")×"
fi
if [ -n "${PICK[gql]:-}" ] && [ -n "${PICK[get]:-}" ]; then
    target "GraphQL single-call req/s ≥ 0.6× REST transcoding req/s" \
        "$(ge "$(at RPS gql)" "$(awk -v b="$(at RPS get)" 'BEGIN { print 0.6 * b }')")" "$(ratio "$(at RPS gql)" "$(at RPS get)")×"
fi
if [ -n "${PICK[gql3]:-}" ] && [ -n "${PICK[slow]:-}" ]; then
    target "3-service GraphQL latency ≤ 1.2× the slowest service's (p50)" \
        "$(ge "$(awk -v b="$(at P50 slow)" 'BEGIN { print 1.2 * b }')" "$(at P50 gql3)")" \
        "p50 $(ms "$(at P50 gql3)") vs $(ms "$(at P50 slow)") ($(ratio "$(at P50 gql3)" "$(at P50 slow)")×)"
fi
if [ "$RSS_MAX_KB" -gt 0 ]; then
    target "omnigate RSS ≤ 40 MB under load" "$([ "$RSS_HWM_KB" -le $((40 * 1024)) ] && echo 1 || echo 0)" \
        "peak $(mb "$RSS_HWM_KB")"
fi
for row in $ROWS; do
    [ "$(at ERRS "$row")" = 0 ] || { echo "- [ ] no errors: ${LABEL[$row]} had $(at ERRS "$row")"; MISSED=1; }
done

if [ "${BENCH_HOLD:-0}" = 1 ]; then
    log "holding: omnigate pid $OMNIGATE_PID on $P_OMNIGATE, nginx on $P_NGINX, backends on $P_HTTP/$P_LIBRARY; Ctrl-C to stop"
    while kill -0 "$OMNIGATE_PID" 2>/dev/null; do sleep 1; done
fi
if [ "${BENCH_STRICT:-0}" = 1 ] && [ $MISSED = 1 ]; then exit 1; fi
exit 0
