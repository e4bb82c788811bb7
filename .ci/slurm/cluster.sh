#!/usr/bin/env bash
# A throwaway single-node SLURM cluster (slurmctld + slurmd + slurmdbd on MariaDB, munge
# auth) living entirely in one directory, for CI. See /work/shared/spec/slurm-ci.md.
#
#   cluster.sh install          apt-get install the packages (quick no-op when present)
#   cluster.sh start DIR        create config under DIR, start daemons, wait until ready;
#                               last stdout line: export SLURM_CONF=DIR/slurm.conf
#   cluster.sh stop DIR         cancel jobs, stop the daemons recorded in DIR/pids (by PID,
#                               never by name), then TERM/KILL leftover job steps/tasks of
#                               this cluster (found by open files in DIR / its SLURM_CONF)
#   cluster.sh status DIR       sinfo / squeue / sacct summary
#
# Progress goes to stderr; stdout of `start` is only the export line, so a caller can do
#   eval "$(.ci/slurm/cluster.sh start "$DIR")"
# Daemons run as root, detached with setsid, their stdio going to DIR/log, so they neither
# hold the caller's pipes nor die with the caller's process group.
#
# Environment (all optional):
#   SLURM_CI_TIMEOUT      readiness deadline per daemon, seconds          [60]
#   SLURM_CI_CTLD_PORT    slurmctld port                                  [6817]
#   SLURM_CI_SLURMD_PORT  slurmd port                                     [6818]
#   SLURM_CI_DBD_PORT     slurmdbd port                                   [6819]
#   SLURM_CI_MYSQL_PORT   MariaDB port (127.0.0.1 only)                   [3306]
#   SLURM_CI_CLUSTER      cluster name (also the account name)            [ci]
#   SLURM_CI_KEEP_ON_FAILURE=1  leave daemons running when `start` fails
set -Eeuo pipefail

PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
TIMEOUT="${SLURM_CI_TIMEOUT:-60}"
CTLD_PORT="${SLURM_CI_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_CI_SLURMD_PORT:-6818}"
DBD_PORT="${SLURM_CI_DBD_PORT:-6819}"
MYSQL_PORT="${SLURM_CI_MYSQL_PORT:-3306}"
CLUSTER="${SLURM_CI_CLUSTER:-ci}"
# Stop order; start order is the reverse.
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)

log() { printf '[cluster.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

usage() {
    echo "usage: $0 install | start DIR | stop DIR | status DIR" >&2
    exit 2
}

# ---------------------------------------------------------------------------- install
cmd_install() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "already installed: ${PACKAGES[*]}"
        return 0
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get install -y --no-install-recommends "${PACKAGES[@]}")
    # apt-get update only when the install cannot proceed without it (no or stale lists).
    if ! "${apt[@]}"; then
        log "install failed; running apt-get update and retrying"
        apt-get update
        "${apt[@]}"
    fi
}

# ---------------------------------------------------------------------------- helpers
# Absolute path without requiring it to exist.
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }

# A zombie counts as dead: exited daemons are reparented to PID 1, which may reap late.
pid_alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat:0:1}" != Z ]
}

read_pid() {
    local f="$DIR/pids/$1.pid"
    if [ -s "$f" ]; then tr -dc '0-9' <"$f"; fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for DESCRIPTION DAEMON COMMAND...: run COMMAND until it succeeds or TIMEOUT seconds
# pass; fail early if DAEMON (name of a recorded PID, or "-") has died meanwhile.
wait_for() {
    local what="$1" daemon="$2"
    shift 2
    local start=$SECONDS deadline=$((SECONDS + TIMEOUT))
    while ! "$@" >/dev/null 2>&1; do
        if [ "$daemon" != - ] && ! pid_alive "$(read_pid "$daemon")"; then
            log "ERROR: $daemon died while waiting for: $what"
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "ERROR: timed out after ${TIMEOUT}s waiting for: $what"
            return 1
        fi
        sleep 0.5
    done
    log "ready after $((SECONDS - start))s: $what"
}

# launch NAME COMMAND...: run COMMAND (a foreground daemon) detached in its own session,
# stdio to DIR/log/NAME.out, and record its PID in DIR/pids/NAME.pid. The inner bash writes
# its own PID and then execs the daemon, so the PID is right whether or not setsid forks.
# The daemon's working directory is DIR/run, so e.g. core dumps stay inside DIR.
launch() {
    local name="$1"
    shift
    log "starting $name"
    # shellcheck disable=SC2016  # $$ and $@ are for the inner shell
    setsid bash -c 'echo $$ >"$0"; cd "$1" || exit 1; shift; exec "$@"' \
        "$DIR/pids/$name.pid" "$DIR/run" "$@" \
        </dev/null >>"$DIR/log/$name.out" 2>&1 &
    local t=$((SECONDS + 5))
    until [ -s "$DIR/pids/$name.pid" ]; do
        [ "$SECONDS" -lt "$t" ] || { log "ERROR: $name did not record its PID"; return 1; }
        sleep 0.1
    done
}

show_logs() {
    local f
    for f in munged.log mariadb-install.log mariadb.err slurmdbd.log slurmctld.log slurmd.log; do
        [ -s "$DIR/log/$f" ] || continue
        echo "===== tail -n 40 $DIR/log/$f =====" >&2
        tail -n 40 "$DIR/log/$f" >&2 || true
    done
    # Daemon stdout/stderr: mostly duplicates the above, but holds crashes before logging starts.
    for f in "$DIR"/log/*.out; do
        [ -s "$f" ] || continue
        echo "===== tail -n 8 $f =====" >&2
        tail -n 8 "$f" >&2 || true
    done
}

mysql_cli() { mariadb --no-defaults --protocol=socket --socket="$DIR/mysql/mysqld.sock" -uroot "$@"; }

munge_ok() { munge -n -S "$DIR/munge/munge.socket.2" | unmunge -S "$DIR/munge/munge.socket.2"; }

node_idle() {
    local state
    state="$(sinfo -h -n "$NODE" -o %t 2>/dev/null)"
    [ "$state" = idle ]
}

# ---------------------------------------------------------------------------- config
write_configs() {
    local cpus detected mem
    cpus="$(nproc)"
    detected="$(slurmd -C | tr ' ' '\n' | sed -n 's/^RealMemory=//p')"
    [ -n "$detected" ] || { log "ERROR: could not read RealMemory from slurmd -C"; return 1; }
    mem=$((detected * 80 / 100))
    log "node $NODE: CPUs=$cpus RealMemory=$mem (slurmd -C detects $detected)"

    cat >"$DIR/slurm.conf" <<EOF
# Generated by .ci/slurm/cluster.sh -- throwaway single-node CI cluster.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
CredType=cred/munge
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=300
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# sacctmgr ignores AuthInfo for its slurmdbd connection; this points it at our munge socket.
AccountingStoragePass=$DIR/munge/munge.socket.2
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

    # slurmdbd.conf is read from the directory of \$SLURM_CONF and must be mode 0600.
    (
        umask 077
        cat >"$DIR/slurmdbd.conf" <<EOF
# Generated by .ci/slurm/cluster.sh
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    )
    chmod 0600 "$DIR/slurmdbd.conf"
}

# ---------------------------------------------------------------------------- start
on_start_failure() {
    local rc=$?
    trap - ERR
    log "ERROR: start failed (exit $rc); log tails follow"
    show_logs
    if [ "${SLURM_CI_KEEP_ON_FAILURE:-0}" != 1 ]; then
        log "stopping the daemons started so far (SLURM_CI_KEEP_ON_FAILURE=1 keeps them)"
        stop_daemons || true
    fi
    exit 1
}

cmd_start() {
    local d pid p
    t0=$SECONDS
    mkdir -p "$DIR"
    DIR="$(cd "$DIR" && pwd -P)"
    NODE="$(hostname -s)"
    export SLURM_CONF="$DIR/slurm.conf"

    for d in "${DAEMONS[@]}"; do
        pid="$(read_pid "$d")"
        if pid_alive "$pid"; then
            log "ERROR: $d (pid $pid) from an earlier start is still running; run: $0 stop $DIR"
            exit 1
        fi
    done
    for p in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$MYSQL_PORT"; do
        if port_in_use "$p"; then
            log "ERROR: 127.0.0.1:$p is already in use (another slurm/mysql?); set SLURM_CI_*_PORT"
            exit 1
        fi
    done
    for p in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sacctmgr; do
        command -v "$p" >/dev/null || { log "ERROR: $p not found; run: $0 install"; exit 1; }
    done

    trap on_start_failure ERR
    mkdir -p "$DIR"/{pids,run,log,tmp,state/ctld,state/slurmd,munge}
    chmod 0700 "$DIR/pids" "$DIR/run" "$DIR/tmp" "$DIR/state"
    # munged insists on a non-world-writable socket dir, readable by clients: 0755.
    chmod 0755 "$DIR" "$DIR/munge"

    # --- munge
    if [ ! -s "$DIR/munge/munge.key" ]; then
        (umask 077 && dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none)
    fi
    chmod 0400 "$DIR/munge/munge.key"
    launch munged munged --foreground --force \
        --socket="$DIR/munge/munge.socket.2" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    wait_for "munge round trip" munged munge_ok

    # --- MariaDB (throwaway data dir, 127.0.0.1 only, own socket)
    if [ ! -d "$DIR/mysql/data/mysql" ]; then
        mkdir -p "$DIR/mysql/data"
        log "initialising MariaDB data dir"
        mariadb-install-db --no-defaults --user=root --basedir=/usr \
            --datadir="$DIR/mysql/data" --auth-root-authentication-method=socket \
            --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1
    fi
    launch mariadbd mariadbd --no-defaults --user=root --datadir="$DIR/mysql/data" \
        --socket="$DIR/mysql/mysqld.sock" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
        --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadb.err" \
        --tmpdir="$DIR/tmp" --skip-name-resolve --skip-log-bin \
        --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900
    wait_for "MariaDB ping" mariadbd mysql_cli -e 'SELECT 1'

    if [ -s "$DIR/mysql/slurm.pass" ]; then
        DB_PASS="$(cat "$DIR/mysql/slurm.pass")"
    else
        DB_PASS="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
        (umask 077 && printf '%s\n' "$DB_PASS" >"$DIR/mysql/slurm.pass")
    fi
    mysql_cli -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
                  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

    write_configs

    # --- slurmdbd, then register cluster/account before slurmctld comes up
    launch slurmdbd slurmdbd -D
    wait_for "slurmdbd answering sacctmgr" slurmdbd sacctmgr -n -P show cluster
    if [ -z "$(sacctmgr -n -P show cluster "$CLUSTER" format=cluster)" ]; then
        sacctmgr -i add cluster "$CLUSTER" >&2
    fi
    if [ -z "$(sacctmgr -n -P show account "$CLUSTER" format=account)" ]; then
        sacctmgr -i add account "$CLUSTER" cluster="$CLUSTER" \
            description="CI account" organization=ci >&2
    fi
    if [ -z "$(sacctmgr -n -P show assoc where user=root account="$CLUSTER" format=user)" ]; then
        sacctmgr -i add user root account="$CLUSTER" cluster="$CLUSTER" >&2
    fi

    # --- slurmctld, slurmd
    launch slurmctld slurmctld -D -f "$SLURM_CONF"
    wait_for "slurmctld ping" slurmctld scontrol ping
    launch slurmd slurmd -D -f "$SLURM_CONF"
    wait_for "node $NODE idle in sinfo" slurmd node_idle
    wait_for "sacct answering" slurmdbd sacct -n -X -S now
    trap - ERR

    log "cluster up in $((SECONDS - t0))s (dir $DIR)"
    sinfo >&2
    echo "export SLURM_CONF=$DIR/slurm.conf"
}

# ---------------------------------------------------------------------------- stop
# TERM each recorded daemon (in DAEMONS order), KILL after a deadline. Tolerates missing
# PID files and dead processes. Refuses to signal a PID that is no longer the daemon.
stop_one() {
    local name="$1" pid comm deadline
    pid="$(read_pid "$name")"
    if ! pid_alive "$pid"; then
        rm -f "$DIR/pids/$name.pid"
        return 0
    fi
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    case "$comm" in
        "${name:0:15}" | mysqld | mariadbd) ;;
        *)
            log "WARNING: pid $pid is '$comm', not $name; not signalling it"
            rm -f "$DIR/pids/$name.pid"
            return 0
            ;;
    esac
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 20))
    while pid_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if pid_alive "$pid"; then
        log "$name did not exit after TERM; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 5))
        while pid_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    fi
    rm -f "$DIR/pids/$name.pid"
}

# Processes left over from this cluster once its daemons are gone: job steps (slurmstepd
# keeps DIR/log/slurmd.log open) and job tasks (their environment has this cluster's
# SLURM_CONF and a SLURM_JOB_ID). Identified by these markers, never by process name.
leftover_pids() {
    local p
    {
        find /proc/[0-9]*/fd -maxdepth 1 \( -lname "$DIR/log/*" -o -lname "$DIR/state/*" \
            -o -lname "$DIR/run/*" \) -printf '%h\n' 2>/dev/null | cut -d/ -f3 || true
        grep -lzx "SLURM_CONF=$DIR/slurm.conf" /proc/[0-9]*/environ 2>/dev/null |
            cut -d/ -f3 | while read -r p; do
                if grep -qz '^SLURM_JOB_ID=' "/proc/$p/environ" 2>/dev/null; then echo "$p"; fi
            done || true
    } | sort -un | while read -r p; do
        if [ "$p" != $$ ] && [ "$p" != "$BASHPID" ] && pid_alive "$p"; then echo "$p"; fi
    done || true
}

sweep_leftovers() {
    local pids p deadline
    pids="$(leftover_pids)"
    [ -n "$pids" ] || return 0
    for p in $pids; do
        log "leftover process $p ($(cat "/proc/$p/comm" 2>/dev/null || echo '?')): TERM"
        kill -TERM "$p" 2>/dev/null || true
    done
    deadline=$((SECONDS + 10))
    while [ "$SECONDS" -lt "$deadline" ]; do
        pids="$(for p in $pids; do if pid_alive "$p"; then echo "$p"; fi; done)"
        [ -n "$pids" ] || return 0
        sleep 0.2
    done
    for p in $pids; do
        log "leftover process $p did not exit after TERM: KILL"
        kill -KILL "$p" 2>/dev/null || true
    done
}

# Client commands must not hang when munged or slurmctld is gone.
sclient() { SLURM_CONF="$DIR/slurm.conf" timeout 10 "$@"; }

stop_daemons() {
    local d
    # Cancel leftover jobs first so no slurmstepd outlives slurmd.
    if [ -f "$DIR/slurm.conf" ] && pid_alive "$(read_pid slurmctld)" &&
        pid_alive "$(read_pid munged)"; then
        local jobs deadline
        jobs="$(sclient squeue -h -o %A 2>/dev/null || true)"
        if [ -n "$jobs" ]; then
            log "cancelling leftover jobs: $(echo "$jobs" | tr '\n' ' ')"
            # shellcheck disable=SC2086  # word splitting wanted: one id per word
            sclient scancel $jobs 2>/dev/null || true
            deadline=$((SECONDS + 20))
            while [ -n "$(sclient squeue -h -o %A 2>/dev/null)" ] &&
                [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
        fi
    fi
    for d in "${DAEMONS[@]}"; do stop_one "$d"; done
    sweep_leftovers
}

cmd_stop() {
    if [ ! -d "$DIR" ]; then
        log "$DIR does not exist; nothing to stop"
        return 0
    fi
    DIR="$(cd "$DIR" && pwd -P)"
    stop_daemons
    log "stopped"
}

# ---------------------------------------------------------------------------- status
cmd_status() {
    DIR="$(cd "$DIR" && pwd -P)"
    export SLURM_CONF="$DIR/slurm.conf"
    local d pid
    for d in "${DAEMONS[@]}"; do
        pid="$(read_pid "$d")"
        if pid_alive "$pid"; then echo "$d: running (pid $pid)"; else echo "$d: not running"; fi
    done
    echo "--- sinfo"
    sinfo || true
    echo "--- squeue"
    squeue || true
    echo "--- sacct (jobs since midnight)"
    sacct -X -S today -o JobID,JobName%20,Partition,State,ExitCode,Elapsed || true
}

# ---------------------------------------------------------------------------- main
[ $# -ge 1 ] || usage
case "$1" in
    install) cmd_install ;;
    start | stop | status)
        [ $# -eq 2 ] || usage
        DIR="$(abspath "$2")"
        "cmd_$1"
        ;;
    *) usage ;;
esac
