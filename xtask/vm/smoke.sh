#!/bin/sh
# The smoke suite of `cargo xtask vm`: one tracer run against nginx (HTTP
# and HTTPS), redis-server and their clients, checked from the tracer's JSON
# spans. It runs under busybox sh both in the test guest and natively on
# the host, so it sticks to busybox tools and options.
#
# Its output is the contract with xtask/src/vm/report.rs:
#   SMOKE <check> PASS|FAIL <detail>     one line per check, always all of them
#   SMOKE_INFO <key> <value>             kernel, socket hooks, iovec walk, tracer summary
#
# Environment (the defaults are the guest's):
#   SMOKE_WORK            scratch directory, created (/tmp/smoke)
#   SMOKE_TRACER          tracer binary (/usr/bin/tracer)
#   SMOKE_HTTP_PORT, SMOKE_HTTPS_PORT, SMOKE_REDIS_PORT   (8080, 8443, 6379)
#   SMOKE_ATTACH_TIMEOUT  seconds to wait for the tracer to attach (150;
#                         loading takes ~20 s under qemu TCG)
# Exit status: 0 when every check passed.

set -u
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${SMOKE_WORK:-/tmp/smoke}
TRACER=${SMOKE_TRACER:-/usr/bin/tracer}
HTTP_PORT=${SMOKE_HTTP_PORT:-8080}
HTTPS_PORT=${SMOKE_HTTPS_PORT:-8443}
REDIS_PORT=${SMOKE_REDIS_PORT:-6379}
ATTACH_TIMEOUT=${SMOKE_ATTACH_TIMEOUT:-150}

# Requests per HTTP and HTTPS check.
N=5
CHECKS="http_server http_client fork_after_attach https_server https_client redis clean_exit memlock cgroup"
SPANS=$WORK/spans.json
TRACER_ERR=$WORK/tracer.err
# Processes this script started, stopped on exit whatever happens.
STARTED=""
TRACER_PID=""
FAILED=0

note() { echo "smoke: $*"; }

report() {
    echo "SMOKE $1 $2 $3"
    [ "$2" = PASS ] || FAILED=1
}

# Whether process $1 runs (a zombie does not).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null
}

# Runs "$2..." every half second until it succeeds; fails after $1 seconds.
wait_until() {
    _ticks=$(($1 * 2))
    shift
    while ! "$@"; do
        [ "$_ticks" -gt 0 ] || return 1
        _ticks=$((_ticks - 1))
        sleep 0.5
    done
}

not_alive() { ! alive "$1"; }

cleanup() {
    for _pid in $STARTED; do kill -TERM "$_pid" 2>/dev/null; done
    for _pid in $STARTED; do
        wait_until 3 not_alive "$_pid" || kill -KILL "$_pid" 2>/dev/null
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

dump() {
    [ -s "$2" ] || return 0
    note "--- $1 ($2) ---"
    sed "s/^/$1| /" "$2"
}

# The tracer's own report lines, for the table and the log.
tracer_info() {
    _hooks=$(grep 'socket hooks:' "$TRACER_ERR" 2>/dev/null | head -n 1 | sed 's/.*socket hooks: *//')
    [ -n "$_hooks" ] && echo "SMOKE_INFO hooks $_hooks"
    _walk=$(grep 'iovec walk:' "$TRACER_ERR" 2>/dev/null | head -n 1 | sed 's/.*iovec walk: *//')
    [ -n "$_walk" ] && echo "SMOKE_INFO walk $_walk"
    # The exit summary (--summary-format json, one line) without its latency
    # table: every counter, by name.
    _summary=$(grep '^{"tracer_summary":' "$TRACER_ERR" 2>/dev/null | tail -n 1 |
        sed 's/,"latency":\[.*\]}$/}/')
    [ -n "$_summary" ] && echo "SMOKE_INFO summary $_summary"
    return 0
}

# Every check fails for reason $1; the run ends.
fail_all() {
    for _check in $CHECKS; do report "$_check" FAIL "$1"; done
    tracer_info
    dump tracer.err "$TRACER_ERR"
    dump nginx "$WORK/nginx-error.log"
    dump redis "$WORK/redis.log"
    exit 1
}

# Number of span lines matching every extended regex given.
count() {
    cp "$SPANS" "$WORK/match"
    for _re in "$@"; do
        grep -E -e "$_re" "$WORK/match" >"$WORK/match.next"
        mv "$WORK/match.next" "$WORK/match"
    done
    wc -l <"$WORK/match" | tr -d ' '
}

# Reports check $1 as passed when exactly $2 spans match the regexes $4...;
# $3 says what they are.
expect() {
    _check=$1 _want=$2 _what=$3
    shift 3
    _got=$(count "$@")
    if [ "$_got" -eq "$_want" ]; then
        report "$_check" PASS "$_got/$_want $_what"
    else
        report "$_check" FAIL "$_got/$_want $_what"
    fi
}

# Regex fragments of the JSON span lines (README, "JSON output").
server_port() { echo "\"server.port\":$1[,}]"; }
TLS='"tls.protocol.name":"tls"'

http_up() { curl -s --noproxy '*' -o /dev/null "http://127.0.0.1:$HTTP_PORT/ready"; }
https_up() { curl -sk --noproxy '*' -o /dev/null "https://127.0.0.1:$HTTPS_PORT/ready"; }
redis_up() { redis-cli -p "$REDIS_PORT" PING 2>/dev/null | grep -q PONG; }
attached() { grep -q 'tracer: attached' "$TRACER_ERR" || not_alive "$TRACER_PID"; }
spans_at_least() { [ "$(wc -l <"$SPANS")" -ge "$1" ]; }

start_services() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -days 2 -subj /CN=localhost -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
        >"$WORK/openssl.log" 2>&1 || {
        dump openssl "$WORK/openssl.log"
        fail_all "openssl could not make the certificate"
    }
    sed -e "s|@WORK@|$WORK|g" -e "s|@HTTP_PORT@|$HTTP_PORT|g" \
        -e "s|@HTTPS_PORT@|$HTTPS_PORT|g" "$HERE/nginx.conf.in" >"$WORK/nginx.conf"
    nginx -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" \
        </dev/null >"$WORK/nginx.out" 2>&1 &
    NGINX_PID=$!
    STARTED="$STARTED $NGINX_PID"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$WORK" </dev/null >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    STARTED="$STARTED $REDIS_PID"
    wait_until 30 http_up || fail_all "nginx did not answer on port $HTTP_PORT"
    wait_until 30 https_up || fail_all "nginx did not answer on port $HTTPS_PORT"
    wait_until 30 redis_up || fail_all "redis-server did not answer on port $REDIS_PORT"
}

# A shell that exists before the tracer attaches and forks its only
# request after: the tracer sees that request only by following the fork.
# busybox wget, whose process name is in no --comm list, makes it.
start_helper() {
    (
        while [ ! -e "$WORK/go" ]; do sleep 0.2; done
        wget -q -O /dev/null "http://127.0.0.1:$HTTP_PORT/forked"
        # A command after wget keeps the shell from exec'ing it in place.
        echo "wget exited with $?" >"$WORK/forked.done"
    ) </dev/null >/dev/null 2>&1 &
    HELPER_PID=$!
    STARTED="$STARTED $HELPER_PID"
}

start_tracer() {
    "$TRACER" --output json --summary-format json -v \
        --pid "$NGINX_PID,$REDIS_PID,$HELPER_PID" --comm curl,redis-cli \
        </dev/null >"$SPANS" 2>"$TRACER_ERR" &
    TRACER_PID=$!
    STARTED="$STARTED $TRACER_PID"
    started=$(cut -d' ' -f1 /proc/uptime)
    wait_until "$ATTACH_TIMEOUT" attached ||
        fail_all "tracer did not attach within $ATTACH_TIMEOUT s"
    alive "$TRACER_PID" || {
        wait "$TRACER_PID"
        fail_all "tracer exited with $? before attaching: $(tail -n 1 "$TRACER_ERR")"
    }
    note "tracer attached after $(echo "$started" | awk -v now="$(cut -d' ' -f1 /proc/uptime)" '{ printf "%.1f", now - $1 }') s"
}

send_requests() {
    touch "$WORK/go"
    wait_until 60 test -e "$WORK/forked.done" || note "the helper's wget did not finish"
    for _i in $(seq "$N"); do
        curl -sS --noproxy '*' -o /dev/null -w '%{http_code} ' \
            "http://127.0.0.1:$HTTP_PORT/plain"
    done >"$WORK/http.codes" 2>&1
    for _i in $(seq "$N"); do
        curl -sSk --noproxy '*' -o /dev/null -w '%{http_code} ' \
            "https://127.0.0.1:$HTTPS_PORT/tls"
    done >"$WORK/https.codes" 2>&1
    redis-cli -p "$REDIS_PORT" SET k v >"$WORK/redis.out" 2>&1
    redis-cli -p "$REDIS_PORT" GET k >>"$WORK/redis.out" 2>&1
    note "http: $(cat "$WORK/http.codes"); https: $(cat "$WORK/https.codes");" \
        "redis: $(tr '\n' ' ' <"$WORK/redis.out")"
}

# The IDs of the programs the tracer holds (fdinfo of its program and link
# fds), so that clean_exit looks at ours only, whatever else runs on the host.
our_program_ids() {
    cat /proc/"$TRACER_PID"/fdinfo/* 2>/dev/null | awk '$1 == "prog_id:" { print $2 }' | sort -u
}

# Our programs still loaded: by ID when we know them, else by name.
programs_left() {
    if [ -s "$WORK/prog.ids" ]; then
        bpftool prog show 2>/dev/null | awk 'NR == FNR { ours[$1 ":"] = 1; next }
            ($1 in ours) { n++ } END { print n + 0 }' "$WORK/prog.ids" -
    else
        bpftool prog show 2>/dev/null | grep -c ' name tracer_'
    fi
}
none_left() { [ "$(programs_left)" -eq 0 ]; }

stop_tracer() {
    our_program_ids >"$WORK/prog.ids"
    kill -INT "$TRACER_PID"
    if wait_until 60 not_alive "$TRACER_PID"; then
        wait "$TRACER_PID"
        TRACER_EXIT=$?
    else
        kill -KILL "$TRACER_PID"
        wait "$TRACER_PID"
        TRACER_EXIT="none (killed 60 s after SIGINT)"
    fi
}

check_spans() {
    plain=$(server_port "$HTTP_PORT")
    tls=$(server_port "$HTTPS_PORT")
    expect http_server "$N" "nginx server spans" \
        '"process":"nginx"' '"kind":"server"' '"protocol":"http"' '"name":"GET /plain"' "$plain"
    expect http_client "$N" "curl client spans" \
        '"process":"curl"' '"kind":"client"' '"protocol":"http"' '"name":"GET /plain"' "$plain"
    expect fork_after_attach 1 "client spans of the helper's wget" \
        '"kind":"client"' '"protocol":"http"' '"name":"GET /forked"' "$plain"
    expect https_server "$N" "nginx server spans with tls" \
        '"process":"nginx"' '"kind":"server"' '"protocol":"http"' '"name":"GET /tls"' "$TLS" "$tls"
    expect https_client "$N" "curl client spans with tls" \
        '"process":"curl"' '"kind":"client"' '"protocol":"http"' '"name":"GET /tls"' "$TLS" "$tls"
    check_redis
}

check_redis() {
    port=$(server_port "$REDIS_PORT")
    detail=""
    ok=1
    for side in "server redis-server" "client redis-cli"; do
        set -- $side
        for name in SET GET; do
            got=$(count "\"process\":\"$2\"" "\"kind\":\"$1\"" '"protocol":"redis"' "\"name\":\"$name\"" "$port")
            detail="$detail $1:$name=$got"
            [ "$got" -eq 1 ] || ok=0
        done
    done
    if [ "$ok" = 1 ]; then report redis PASS "${detail# }"; else report redis FAIL "${detail# } (want 1 each)"; fi
}

check_clean_exit() {
    if [ "$TRACER_EXIT" != 0 ]; then
        report clean_exit FAIL "tracer exit status $TRACER_EXIT"
    elif wait_until 5 none_left; then
        report clean_exit PASS "exit 0, no program left ($(wc -l <"$WORK/prog.ids") were ours)"
    else
        report clean_exit FAIL "exit 0 but $(programs_left) tracer programs still loaded"
    fi
}

# (util-linux setpriv by path: busybox sh would run its own applet.)
# A second tracer without CAP_SYS_RESOURCE under a 64 KiB RLIMIT_MEMLOCK,
# so it cannot raise the limit. Kernels before 5.11 charge eBPF maps to
# that limit: the tracer must refuse in one line that names it. Later
# kernels charge the memory cgroup: it must attach and run.
check_memlock() {
    _release=$(uname -r)
    _major=${_release%%.*}
    _minor=${_release#*.}
    _minor=${_minor%%[!0-9]*}
    (
        ulimit -l 64
        exec /usr/bin/setpriv --bounding-set -sys_resource "$TRACER" --output none \
            --pid $$ --duration 1
    ) </dev/null >/dev/null 2>"$WORK/memlock.err"
    _status=$?
    _lines=$(wc -l <"$WORK/memlock.err")
    if [ "$_major" -lt 5 ] || { [ "$_major" -eq 5 ] && [ "$_minor" -lt 11 ]; }; then
        if [ "$_status" -ne 0 ] && [ "$_lines" -eq 1 ] && grep -q RLIMIT_MEMLOCK "$WORK/memlock.err"; then
            report memlock PASS "refused in one line naming RLIMIT_MEMLOCK (exit $_status)"
        else
            report memlock FAIL "exit $_status, $_lines lines: $(head -c 300 "$WORK/memlock.err")"
        fi
    elif [ "$_status" -eq 0 ] && grep -q attached "$WORK/memlock.err"; then
        report memlock PASS "attached without CAP_SYS_RESOURCE (memory cgroup accounting)"
    else
        report memlock FAIL "exit $_status: $(tail -n 1 "$WORK/memlock.err")"
    fi
}

# The cgroup v2 mount: the guest's pure one at /sys/fs/cgroup, the host's
# hybrid /sys/fs/cgroup/unified.
cgroup2_mount() {
    awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") print $5; break } }' \
        /proc/self/mountinfo | head -n 1
}

# Moves every process of the space-separated pids $2... into cgroup $1.
move_into() {
    _to=$1
    shift
    for _pid in "$@"; do echo "$_pid" >"$_to/cgroup.procs" || return 1; done
}

# A third tracer run with --cgroup only: the nginx master moved into a new
# cgroup before attach, its worker after (the kernel's cgroup lookup at its
# next call), redis-server left outside. nginx's spans must all be there,
# redis-server's none. Processes go back to the root cgroup afterwards.
check_cgroup() {
    _mnt=$(cgroup2_mount)
    if [ -z "$_mnt" ]; then
        report cgroup FAIL "no cgroup2 filesystem mounted"
        return
    fi
    _cg="$_mnt/tracer-smoke-$$"
    _workers=$(grep -l "^PPid:[[:space:]]*$NGINX_PID\$" /proc/[0-9]*/status 2>/dev/null |
        sed 's|/proc/\([0-9]*\)/status|\1|')
    if ! mkdir "$_cg" || ! move_into "$_cg" "$NGINX_PID"; then
        report cgroup FAIL "could not make $_cg and move nginx into it"
        return
    fi
    "$TRACER" --output json --summary-format json --cgroup "$_cg" \
        </dev/null >"$WORK/cgroup.spans" 2>"$WORK/cgroup.err" &
    _tracer=$!
    STARTED="$STARTED $_tracer"
    _attached() { grep -q 'tracer: attached' "$WORK/cgroup.err" || not_alive "$_tracer"; }
    wait_until "$ATTACH_TIMEOUT" _attached
    move_into "$_cg" $_workers
    for _i in $(seq "$N"); do
        curl -sS --noproxy '*' -o /dev/null "http://127.0.0.1:$HTTP_PORT/incgroup"
    done
    redis-cli -p "$REDIS_PORT" SET outside 1 >/dev/null 2>&1
    _spans_in() { [ "$(grep -c '"name":"GET /incgroup"' "$WORK/cgroup.spans")" -ge "$N" ]; }
    wait_until 30 _spans_in
    kill -INT "$_tracer"
    wait_until 60 not_alive "$_tracer" || kill -KILL "$_tracer"
    wait "$_tracer"
    _status=$?
    move_into "$(dirname "$_cg")" "$NGINX_PID" $_workers
    rmdir "$_cg"
    _nginx=$(grep '"process":"nginx"' "$WORK/cgroup.spans" | grep '"kind":"server"' |
        grep -c '"name":"GET /incgroup"')
    _redis=$(grep -c '"process":"redis-server"' "$WORK/cgroup.spans")
    if [ "$_status" -eq 0 ] && [ "$_nginx" -eq "$N" ] && [ "$_redis" -eq 0 ] && [ -n "$_workers" ]; then
        report cgroup PASS "$_nginx/$N nginx spans (worker moved in after attach), 0 of redis-server outside, in $_mnt"
    else
        report cgroup FAIL "exit $_status, nginx $_nginx/$N, redis-server $_redis/0, workers '$_workers', in $_mnt: $(tail -n 1 "$WORK/cgroup.err")"
    fi
}

mkdir -p "$WORK" || exit 1
echo "SMOKE_INFO kernel $(uname -r)"
start_services
start_helper
start_tracer
send_requests
# Spans are written once both ends of a request are seen and linking lets
# go of them (2 s window): wait for the expected number, then stop.
wait_until 30 spans_at_least $((4 * N + 6)) || note "fewer spans than expected after 30 s"
stop_tracer
check_spans
check_clean_exit
tracer_info
check_memlock
check_cgroup
if [ "$FAILED" = 0 ]; then
    # -v debug lines (some 1000) only when something failed.
    grep -v -e ' DEBUG\]' -e ' TRACE\]' -e '^[[:space:]]' "$TRACER_ERR" >"$WORK/tracer.brief"
    dump tracer.err "$WORK/tracer.brief"
else
    dump tracer.err "$TRACER_ERR"
    dump spans "$SPANS"
fi
exit "$FAILED"
