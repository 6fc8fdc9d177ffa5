#!/usr/bin/env bash
# slurm_up.sh -- bring up a throw-away one-node SLURM cluster on loopback, for
# tests/test_slurm.py (pytest -m slurm) in CI and on a developer machine. See docs/CLUSTER.md.
#
# Tested on Debian 12 (bookworm, slurm-wlm 22.05.8, munge 0.5.15), root, no systemd,
# no usable cgroups, 2 CPUs.  Everything it creates lives under $SLURM_ROOT
# (default /tmp/slurm); the only writes elsewhere are the apt packages themselves.
#
# Usage (as root):
#   bash .ci/slurm_up.sh        # installs if needed, starts munged+slurmctld+slurmd, smoke-tests
#   source /tmp/slurm/env.sh    # exports SLURM_CONF and puts the sacct shim first on PATH
#   ... sbatch / srun / hydra submitit_slurm ...
#   bash .ci/slurm_down.sh
#
# Knobs (environment):
#   SLURM_ROOT=/tmp/slurm     where config, state, logs, munge key/socket go
#   SLURM_AUTH=munge          munge | none   (munge falls back to none if munged cannot start)
#   SLURM_PARTITION=debug     name of the single (default) partition
#   SLURM_CPUS=               advertise this many CPUs instead of the detected count
#                             (uses SlurmdParameters=config_overrides; lets >nproc jobs run at once)
#   SLURM_INSTALL=1           apt-get install the packages if slurmctld/slurmd/sinfo are missing
#   SLURM_SACCT_SHIM=1        install $SLURM_ROOT/bin/sacct that answers from squeue (no slurmdbd needed;
#                             submitit polls sacct and otherwise never notices killed/cancelled jobs)
#   SLURM_CRED_EXPIRE=10      AuthInfo cred_expire; also the delay before a requeued job may restart
#                             (Slurm default 120 s -> requeued jobs sit PENDING/BeginTime ~2.5 min)
#   SLURM_SMOKE=1             run `srun hostname` at the end
#   SLURM_UP_TIMEOUT=60       seconds to wait for the node to become idle
set -euo pipefail

SLURM_ROOT=${SLURM_ROOT:-/tmp/slurm}
SLURM_AUTH=${SLURM_AUTH:-munge}
SLURM_PARTITION=${SLURM_PARTITION:-debug}
SLURM_CPUS=${SLURM_CPUS:-}
SLURM_INSTALL=${SLURM_INSTALL:-1}
SLURM_SACCT_SHIM=${SLURM_SACCT_SHIM:-1}
SLURM_CRED_EXPIRE=${SLURM_CRED_EXPIRE:-10}
SLURM_SMOKE=${SLURM_SMOKE:-1}
SLURM_UP_TIMEOUT=${SLURM_UP_TIMEOUT:-60}

T_START=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T_START) / 1000000 )); printf '[%s %3d.%02ds] %s\n' slurm-up $((ms / 1000)) $((ms % 1000 / 10)) "$*" >&2; }
die() { log "ERROR: $*"; for f in "$SLURM_ROOT"/log/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
PATH=$PATH:/usr/sbin:/sbin

# ---------------------------------------------------------------- 1. packages
pkgs_missing() {
  for b in slurmctld slurmd sinfo srun sbatch scontrol; do command -v "$b" >/dev/null || return 0; done
  if [ "$SLURM_AUTH" = munge ]; then command -v munged >/dev/null || [ -x /usr/sbin/munged ] || return 0; fi
  return 1
}
if pkgs_missing; then
  [ "$SLURM_INSTALL" = 1 ] || die "slurm binaries missing and SLURM_INSTALL=0"
  log "installing slurmctld slurmd slurm-client munge (apt-get, --no-install-recommends)"
  export DEBIAN_FRONTEND=noninteractive
  pkgs="slurmctld slurmd slurm-client munge"
  if ! apt-get install -y -q --no-install-recommends $pkgs >"${TMPDIR:-/tmp}/slurm-up-apt.log" 2>&1; then
    log "apt-get install failed, retrying after apt-get update"
    apt-get update -q >>"${TMPDIR:-/tmp}/slurm-up-apt.log" 2>&1 || true
    apt-get install -y -q --no-install-recommends $pkgs >>"${TMPDIR:-/tmp}/slurm-up-apt.log" 2>&1 \
      || { tail -n 30 "${TMPDIR:-/tmp}/slurm-up-apt.log" >&2; die "apt-get install failed"; }
  fi
  log "packages installed"
fi
# ---------------------------------------------------------------- 2. clean slate
if [ -f "$SLURM_ROOT/slurm.conf" ] && [ -f "$(dirname "$0")/slurm_down.sh" ]; then
  SLURM_ROOT=$SLURM_ROOT bash "$(dirname "$0")/slurm_down.sh" >/dev/null 2>&1 || true
fi
for p in "$SLURM_ROOT"/run/slurmctld.pid "$SLURM_ROOT"/run/slurmd.pid; do
  if [ -f "$p" ] && kill -0 "$(cat "$p")" 2>/dev/null && [ "$(awk '{print $3}' /proc/"$(cat "$p")"/stat 2>/dev/null)" != Z ]; then
    die "a daemon from a previous run is still alive (pid $(cat "$p")); run .ci/slurm_down.sh first"
  fi
done
rm -rf "$SLURM_ROOT"/{state,spool,log,run,bin}
mkdir -p "$SLURM_ROOT"/{state,spool,log,run,bin}
chmod 755 "$SLURM_ROOT"

HOST=$(hostname -s)
CONF=$SLURM_ROOT/slurm.conf

# ---------------------------------------------------------------- 3. munge (private instance)
MUNGE_SOCK=$SLURM_ROOT/munge/run/munge.socket.2
start_munge() {
  command -v munged >/dev/null || [ -x /usr/sbin/munged ] || return 1
  id munge >/dev/null 2>&1 || return 1
  # munged refuses sockets in dirs that are not o+x, and key dirs writable by others
  mkdir -p "$SLURM_ROOT/munge/etc" "$SLURM_ROOT/munge/run"
  chmod 755 "$SLURM_ROOT/munge"
  chown munge:munge "$SLURM_ROOT/munge/etc" "$SLURM_ROOT/munge/run"
  chmod 700 "$SLURM_ROOT/munge/etc"; chmod 755 "$SLURM_ROOT/munge/run"
  if [ ! -s "$SLURM_ROOT/munge/etc/munge.key" ]; then
    if command -v mungekey >/dev/null || [ -x /usr/sbin/mungekey ]; then
      runuser -u munge -- /usr/sbin/mungekey --create --keyfile="$SLURM_ROOT/munge/etc/munge.key" || return 1
    else
      dd if=/dev/urandom of="$SLURM_ROOT/munge/etc/munge.key" bs=1 count=1024 2>/dev/null
      chown munge:munge "$SLURM_ROOT/munge/etc/munge.key"; chmod 400 "$SLURM_ROOT/munge/etc/munge.key"
    fi
  fi
  runuser -u munge -- /usr/sbin/munged \
      --socket="$MUNGE_SOCK" \
      --key-file="$SLURM_ROOT/munge/etc/munge.key" \
      --pid-file="$SLURM_ROOT/munge/run/munged.pid" \
      --log-file="$SLURM_ROOT/munge/etc/munged.log" \
      --seed-file="$SLURM_ROOT/munge/etc/munged.seed" || return 1
  for _ in $(seq 50); do
    munge -S "$MUNGE_SOCK" -n 2>/dev/null | unmunge -S "$MUNGE_SOCK" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
if [ "$SLURM_AUTH" = munge ]; then
  if start_munge; then
    log "munged up (socket $MUNGE_SOCK, pid $(cat "$SLURM_ROOT/munge/run/munged.pid"))"
  else
    log "WARNING: munged failed to start (see $SLURM_ROOT/munge/etc/munged.log); falling back to auth/none"
    SLURM_AUTH=none
  fi
fi
if [ "$SLURM_AUTH" = munge ]; then
  AUTH_LINES="AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK,cred_expire=$SLURM_CRED_EXPIRE"
else
  AUTH_LINES="AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=$SLURM_CRED_EXPIRE"
fi

# ---------------------------------------------------------------- 4. slurm.conf
# `slurmd -C` prints e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
HW=$(slurmd -C | head -n 1)
REALMEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
if [ -n "$SLURM_CPUS" ]; then
  NODE_HW="CPUs=$SLURM_CPUS Sockets=1 CoresPerSocket=$SLURM_CPUS ThreadsPerCore=1 RealMemory=$REALMEM"
else
  NODE_HW=$(sed 's/^NodeName=[^ ]* //' <<<"$HW")
fi
cat >"$CONF" <<EOF
# generated by .ci/slurm_up.sh -- one node on loopback, no systemd/cgroups/slurmdbd
ClusterName=ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
$AUTH_LINES
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$SLURM_ROOT/state
SlurmdSpoolDir=$SLURM_ROOT/spool
SlurmctldPidFile=$SLURM_ROOT/run/slurmctld.pid
SlurmdPidFile=$SLURM_ROOT/run/slurmd.pid
SlurmctldLogFile=$SLURM_ROOT/log/slurmctld.log
SlurmdLogFile=$SLURM_ROOT/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups, no systemd: track processes by /proc parentage, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
MailProg=/bin/true
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=1
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
# keep finished jobs in slurmctld memory for an hour (the sacct shim reads them via squeue)
MinJobAge=3600
KillWait=5
Waittime=0
JobRequeue=1
# reject (at submit time) jobs that can never run here, e.g. -c 4 on a 2-CPU node, instead of PENDING forever
EnforcePartLimits=ALL
NodeName=$HOST NodeAddr=127.0.0.1 $NODE_HW State=UNKNOWN
PartitionName=$SLURM_PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
export SLURM_CONF=$CONF
log "wrote $CONF (auth=$SLURM_AUTH, node: $NODE_HW)"

# ---------------------------------------------------------------- 5. sacct shim
if [ "$SLURM_SACCT_SHIM" = 1 ]; then
  cat >"$SLURM_ROOT/bin/sacct" <<'EOF'
#!/usr/bin/env bash
# Minimal sacct replacement for a cluster without slurmdbd: answers from slurmctld's in-memory
# job table (squeue -t all, kept for MinJobAge).  Always prints --parsable2 style output.
# Enough for submitit's `sacct -o JobID,State,NodeList --parsable2 -j ID ...`.
fields="JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode"; jobs=""; header=1
while [ $# -gt 0 ]; do
  case "$1" in
    -o|--format) fields=$2; shift ;;
    --format=*) fields=${1#*=} ;;
    -j|--jobs) jobs="$jobs,$2"; shift ;;
    --jobs=*) jobs="$jobs,${1#*=}" ;;
    -n|--noheader) header=0 ;;
    -S|-E|--starttime|--endtime|-u|--user|-A|--accounts|-s|--state|-M|--clusters) shift ;;
    *) ;;
  esac
  shift
done
fmt=""; IFS=, read -ra F <<<"$fields"
for f in "${F[@]}"; do
  case "${f%%%*}" in
    JobID|JobIDRaw) c=%i ;; JobName) c=%j ;; State) c=%T ;; NodeList) c=%N ;; Partition) c=%P ;;
    Account) c=%a ;; AllocCPUS|NCPUS) c=%C ;; Elapsed) c=%M ;; User) c=%u ;; Reason) c=%r ;;
    *) c="" ;;
  esac
  fmt="$fmt${fmt:+|}$c"
done
[ $header = 1 ] && (IFS='|'; echo "${F[*]%%%*}")
args=(-h -r -t all -o "$fmt")
[ -n "$jobs" ] && args+=(-j "${jobs#,}")
squeue "${args[@]}" 2>/dev/null
exit 0
EOF
  chmod 755 "$SLURM_ROOT/bin/sacct"
fi

cat >"$SLURM_ROOT/env.sh" <<EOF
export SLURM_CONF=$CONF
$( [ "$SLURM_SACCT_SHIM" = 1 ] && echo "export PATH=$SLURM_ROOT/bin:\$PATH" )
EOF
# GitHub Actions convenience
if [ -n "${GITHUB_ENV:-}" ]; then echo "SLURM_CONF=$CONF" >>"$GITHUB_ENV"; fi
if [ -n "${GITHUB_PATH:-}" ] && [ "$SLURM_SACCT_SHIM" = 1 ]; then echo "$SLURM_ROOT/bin" >>"$GITHUB_PATH"; fi

# ---------------------------------------------------------------- 6. daemons
slurmctld -f "$CONF" || die "slurmctld failed to start"
slurmd -f "$CONF" || die "slurmd failed to start"
log "slurmctld pid $(cat "$SLURM_ROOT/run/slurmctld.pid" 2>/dev/null || echo '?'), slurmd started; waiting for node"

deadline=$(( $(date +%s) + SLURM_UP_TIMEOUT ))
state=""
while :; do
  state=$(sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -n 1 || true)
  case "$state" in
    idle|mixed|allocated) break ;;
    down*|drain*|inval*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || die "node $HOST not idle after ${SLURM_UP_TIMEOUT}s (state '$state')"
  sleep 0.2
done
log "node $HOST is $state"

if [ "$SLURM_SMOKE" = 1 ]; then
  out=$(timeout 60 srun -N1 -n1 -t 1 hostname) || die "srun smoke test failed"
  log "smoke test: srun hostname -> $out"
fi
log "SLURM up. Use: source $SLURM_ROOT/env.sh   (SLURM_CONF=$CONF)"
