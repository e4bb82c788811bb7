#!/usr/bin/env bash
# Smoke test for the CI SLURM cluster started by `.ci/slurm/cluster.sh start DIR`.
#   smoke.sh DIR
# 1. a 3-task array job (sbatch --array=0-2 --wait) runs every task as an array task and
#    sacct lists all three COMPLETED;
# 2. a sleeping job that is scancel'ed shows up in sacct as CANCELLED (accounting surfaces
#    killed jobs, which is what lets submitit notice them).
# Exits non-zero with a "SMOKE FAIL:" message on any failure.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR="$(cd "$1" && pwd -P)"
export SLURM_CONF="${SLURM_CONF:-$DIR/slurm.conf}"
[ -f "$SLURM_CONF" ] || { echo "SMOKE FAIL: no $SLURM_CONF (cluster not started?)" >&2; exit 1; }
DEADLINE_S="${SLURM_CI_SMOKE_TIMEOUT:-60}"

log() { printf '[smoke.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
fail() {
    echo "SMOKE FAIL: $*" >&2
    echo "--- squeue" >&2
    squeue >&2 || true
    echo "--- sacct" >&2
    sacct -X -S today -o JobID,JobName%20,State,ExitCode >&2 || true
    exit 1
}

WORK="$(mktemp -d "$DIR/smoke.XXXXXX")"
t0=$SECONDS

# ---- 1. array job
log "submitting 3-task array job"
# Single quotes: the variables are expanded by the job, not here.
# shellcheck disable=SC2016
array_id="$(sbatch --parsable --wait --array=0-2 --time=2 --job-name=smoke-array \
    --output="$WORK/array-%A_%a.out" --chdir="$WORK" \
    --wrap='echo "$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_JOB_ID" > "task-$SLURM_ARRAY_TASK_ID.txt"')" ||
    fail "array job failed (sbatch --wait exit $?)"
array_id="${array_id%%;*}"
log "array job $array_id finished"

for i in 0 1 2; do
    f="$WORK/task-$i.txt"
    [ -s "$f" ] || fail "array task $i wrote no $f"
    read -r got_task got_job <"$f" || true
    [ "$got_task" = "$i" ] || fail "task file $f has SLURM_ARRAY_TASK_ID='$got_task', want $i"
    [ "$got_job" = "$array_id" ] ||
        fail "task $i has SLURM_ARRAY_JOB_ID='$got_job', want $array_id (not run as array task?)"
done
log "all 3 tasks ran as tasks of array $array_id"

# sacct lags job completion by a second or two: poll until a deadline.
want=$'0|COMPLETED\n1|COMPLETED\n2|COMPLETED'
deadline=$((SECONDS + DEADLINE_S))
while :; do
    got="$(sacct -n -X -P -j "$array_id" -o JobID,State 2>/dev/null |
        sed -n "s/^${array_id}_//p" | sort)" || got=""
    [ "$got" = "$want" ] && break
    [ "$SECONDS" -lt "$deadline" ] ||
        fail "sacct does not list array $array_id tasks 0-2 COMPLETED after ${DEADLINE_S}s; got: $(echo "$got" | tr '\n' ' ')"
    sleep 1
done
log "sacct: array tasks 0-2 COMPLETED"

# ---- 2. cancelled job
cancel_id="$(sbatch --parsable --time=5 --job-name=smoke-cancel --output="$WORK/cancel-%j.out" \
    --wrap='sleep 300')" || fail "could not submit the job to cancel"
cancel_id="${cancel_id%%;*}"
log "submitted job $cancel_id (sleep 300); waiting for RUNNING"
deadline=$((SECONDS + DEADLINE_S))
until [ "$(squeue -h -j "$cancel_id" -o %T 2>/dev/null)" = RUNNING ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "job $cancel_id not RUNNING after ${DEADLINE_S}s"
    sleep 0.5
done
scancel "$cancel_id" || fail "scancel $cancel_id failed"
log "scancel'ed $cancel_id; polling sacct for CANCELLED"
deadline=$((SECONDS + DEADLINE_S))
while :; do
    state="$(sacct -n -X -P -j "$cancel_id" -o State 2>/dev/null | head -n 1)" || state=""
    case "$state" in CANCELLED*) break ;; esac
    [ "$SECONDS" -lt "$deadline" ] ||
        fail "sacct shows job $cancel_id as '$state', not CANCELLED, ${DEADLINE_S}s after scancel"
    sleep 1
done
log "sacct: job $cancel_id $state"

rm -rf "$WORK"
log "SMOKE OK in $((SECONDS - t0))s"
