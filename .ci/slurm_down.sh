#!/usr/bin/env bash
# slurm_down.sh -- tear down the cluster started by .ci/slurm_up.sh.
# Cancels all jobs, `scontrol shutdown`s slurmctld+slurmd, stops the private munged.
# Only touches processes whose PIDs are in $SLURM_ROOT pid files.
#   SLURM_ROOT=/tmp/slurm   same as for slurm_up.sh
#   SLURM_CLEAN=0           1 = also rm -rf $SLURM_ROOT (default keeps logs for CI artifacts)
set -uo pipefail
SLURM_ROOT=${SLURM_ROOT:-/tmp/slurm}
SLURM_CLEAN=${SLURM_CLEAN:-0}
export SLURM_CONF=$SLURM_ROOT/slurm.conf
PATH=$PATH:/usr/sbin:/sbin
T_START=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T_START) / 1000000 )); printf '[%s %3d.%02ds] %s\n' slurm-down $((ms / 1000)) $((ms % 1000 / 10)) "$*" >&2; }

# alive = exists and is not a zombie (PID 1 in some sandboxes never reaps daemonised children)
alive() { [ -n "${1:-}" ] && [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
pidof_file() { [ -f "$1" ] && cat "$1" 2>/dev/null; }
wait_gone() {  # pid timeout_s
  local i; for i in $(seq $(( $2 * 10 ))); do alive "$1" || return 0; sleep 0.1; done; return 1
}

CTLD=$(pidof_file "$SLURM_ROOT/run/slurmctld.pid")
SLURMD=$(pidof_file "$SLURM_ROOT/run/slurmd.pid")
MUNGED=$(pidof_file "$SLURM_ROOT/munge/run/munged.pid")

if [ -f "$SLURM_CONF" ] && alive "$CTLD"; then
  jobs=$(squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${jobs// }" ]; then
    log "cancelling jobs: $jobs"
    scancel $jobs 2>/dev/null
    for _ in $(seq 150); do [ -z "$(squeue -h -t PD,R,CG,S,CF -o %A 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  log "scontrol shutdown"
  scontrol shutdown >/dev/null 2>&1 || true
fi
for pair in "slurmctld:$CTLD" "slurmd:$SLURMD"; do
  name=${pair%%:*}; pid=${pair#*:}
  alive "$pid" || continue
  if ! wait_gone "$pid" 10; then log "$name ($pid) still alive, SIGTERM"; kill -TERM "$pid" 2>/dev/null; fi
  if ! wait_gone "$pid" 5; then log "$name ($pid) still alive, SIGKILL"; kill -KILL "$pid" 2>/dev/null; fi
done
if alive "$MUNGED"; then
  kill -TERM "$MUNGED" 2>/dev/null
  wait_gone "$MUNGED" 5 || kill -KILL "$MUNGED" 2>/dev/null
fi
# report (do not kill) leftover slurmstepd processes
left=""; for p in $(pgrep -x slurmstepd 2>/dev/null); do alive "$p" && left="$left$p "; done
[ -n "$left" ] && log "WARNING: slurmstepd processes still present: $left"
rm -f "$SLURM_ROOT"/run/*.pid
[ "$SLURM_CLEAN" = 1 ] && rm -rf "$SLURM_ROOT"
log "SLURM down"
