#!/usr/bin/env bash
# A private, throw-away PostgreSQL for the journal tests and benchmarks.
#
#   eval "$(scripts/pg-test.sh start)"   # start (or reuse) it; exports FLUX_TEST_POSTGRES
#   eval "$(scripts/pg-test.sh env)"     # the same line, only if it is running
#   scripts/pg-test.sh stop              # stop it and delete its folder
#   scripts/pg-test.sh restart [SECONDS] # stop it, wait, start it again on the same port
#
# The instance lives in a temporary folder (data, socket, log), listens on 127.0.0.1 on a free
# port, trusts local connections (it is reachable only from this machine, and holds test data
# only), and has one database, `flux_test`. The server refuses to run as root, so as root it runs
# as the `postgres` user. PostgreSQL is installed from Debian (scripts/install-deps.sh) when
# `initdb` is missing. Idempotent and quiet: only the export line goes to stdout.
#
# Where it is recorded: $FLUX_PG_STATE (default: .flux/pg-test in this repository), a file
# holding the folder and the port.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
state="${FLUX_PG_STATE:-$repo/.flux/pg-test}"
database="flux_test"

die() {
    echo "pg-test: $*" >&2
    exit 1
}

find_bin() {
    local candidate
    if command -v pg_config >/dev/null 2>&1; then
        candidate="$(pg_config --bindir 2>/dev/null || true)"
        [[ -x "$candidate/initdb" ]] && { echo "$candidate"; return 0; }
    fi
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
        [[ -x "$candidate/initdb" ]] && { echo "$candidate"; return 0; }
    done
    command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
    return 1
}

# Runs a server binary as the postgres user when we are root, as ourselves otherwise.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

# Server settings for the journal's write path (Docs/journal-postgres.md, "Tuning"): room for a
# whole benchmark's WAL between checkpoints (a checkpoint mid-run makes every page's next change
# write a full page image), WAL buffers that hold a 1024-event batch several times over, and
# shared buffers that hold the benchmark's tables. Durability is the point: fsync,
# synchronous_commit and full_page_writes stay on (the defaults).
tuning="-c shared_buffers=512MB -c wal_buffers=64MB -c max_wal_size=8GB -c min_wal_size=1GB -c checkpoint_timeout=30min"

# Starts the server (pg_ctl start) with none of our caller's descriptors beyond 0-2. The server is
# a daemon: whatever it inherits stays open for as long as it runs. Foundation's `Process` (the
# tests run this script with it) learns that its child ended when the child's copy of a socket
# closes; a server holding that copy made the caller wait until the server stopped.
start_server() {
    local dir="$1" port="$2" bin="$3"
    (
        for fd in /proc/self/fd/*; do
            fd="${fd##*/}"
            # 255: bash's handle on this script.
            if [[ "$fd" =~ ^[0-9]+$ ]] && ((fd > 2 && fd != 255)); then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec </dev/null >/dev/null 2>&1
        as_owner "$bin/pg_ctl" start -D "$dir/data" -l "$dir/server.log" -w -t 30 -s \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 $tuning"
    )
}

conninfo() { echo "host=127.0.0.1 port=$1 dbname=$database user=postgres"; }

# Prints "DIR PORT" of the recorded instance when it is up, else nothing (and forgets a dead one).
running() {
    [[ -f "$state" ]] || return 1
    local dir port bin
    read -r dir port <"$state" || true
    if [[ -n "${dir:-}" && -f "$dir/data/postmaster.pid" ]] && bin="$(find_bin)" &&
        as_owner "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1; then
        echo "$dir $port"
        return 0
    fi
    return 1
}

free_port() {
    local port tries=0
    while ((tries < 50)); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
        tries=$((tries + 1))
    done
    return 1
}

stop_instance() {
    [[ -f "$state" ]] || return 0
    local dir port bin
    read -r dir port <"$state" || true
    if [[ -n "${dir:-}" && -d "$dir" ]]; then
        if bin="$(find_bin)" && [[ -f "$dir/data/postmaster.pid" ]]; then
            as_owner "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 20 >/dev/null 2>&1 ||
                as_owner "$bin/pg_ctl" stop -D "$dir/data" -m immediate -w -t 10 >/dev/null 2>&1 || true
        fi
        # Only ever delete a folder this script made.
        [[ "$(basename "$dir")" == flux-pg.* ]] && rm -rf "$dir"
    fi
    rm -f "$state"
}

start_instance() {
    local up
    if up="$(running)"; then
        conninfo "${up#* }"
        return 0
    fi
    stop_instance # forget a dead one

    local bin
    if ! bin="$(find_bin)"; then
        FLUX_WITH_POSTGRES=1 "$repo/scripts/install-deps.sh" >&2 || die "cannot install PostgreSQL"
        bin="$(find_bin)" || die "PostgreSQL installed but initdb not found"
    fi
    [[ $(id -u) -ne 0 ]] || id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user"

    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/flux-pg.XXXXXX")"
    chmod 755 "$dir"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$dir"
    mkdir -p "$(dirname "$state")"
    echo "$dir 0" >"$state"

    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
        >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        stop_instance
        die "initdb failed"
    }

    local port attempt
    for attempt in 1 2 3 4 5; do
        port="$(free_port)" || die "no free port"
        echo "$dir $port" >"$state"
        if start_server "$dir" "$port" "$bin"; then
            if as_owner "$bin/createdb" -h "$dir" -p "$port" -U postgres "$database" >/dev/null 2>&1; then
                conninfo "$port"
                return 0
            fi
            tail -n 20 "$dir/server.log" >&2 || true
            stop_instance
            die "createdb failed"
        fi
        # Most likely the port was taken between the check and the start: try another.
    done
    tail -n 20 "$dir/server.log" >&2 || true
    stop_instance
    die "PostgreSQL did not start"
}

case "${1:-}" in
start)
    info="$(start_instance)"
    echo "export FLUX_TEST_POSTGRES='$info'"
    ;;
env)
    if up="$(running)"; then echo "export FLUX_TEST_POSTGRES='$(conninfo "${up#* }")'"; fi
    ;;
stop)
    stop_instance
    ;;
restart)
    # Stops the running instance, waits ${2:-0} seconds, starts it again on the same port (tests
    # of the journal's behaviour while the database is away).
    up="$(running)" || die "not running"
    read -r dir port <<<"$up"
    bin="$(find_bin)"
    as_owner "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 20 >/dev/null 2>&1 || true
    sleep "${2:-0}"
    start_server "$dir" "$port" "$bin" || die "restart failed"
    ;;
*)
    echo "usage: $0 start|env|stop|restart [SECONDS]" >&2
    exit 2
    ;;
esac
