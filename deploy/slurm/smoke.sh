#!/usr/bin/env bash
# Smoke test on a one-node Slurm cluster on localhost, as root on a fresh Debian 12 machine:
# installs slurm-wlm and munge if missing, starts munged, slurmctld and slurmd from a generated slurm.conf,
# submits a 4-shard bound of the demo model with its merge and checks (submit.sh), waits, prints the merged b₀
# and the verdict as its last line, stops the daemons it started, and exits non-zero on any failure.
set -euo pipefail
SHARDS=${SHARDS:-4}
STRATEGY=${STRATEGY:-brute-force}
SEQUENCES=${SEQUENCES:-1024}
WORK=${WORK:-$(mktemp -d /tmp/verifier-slurm.XXXXXX)}
TIMEOUT=${TIMEOUT:-900}                 # seconds to wait for the jobs
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
t0=$(date +%s.%N)
say() { echo "smoke: $*" >&2; }

[ "$(id -u)" = 0 ] || { echo "smoke.sh runs as root (it starts munged, slurmctld and slurmd)" >&2; exit 1; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null; }
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# munge: a key, its run directory, the daemon as user munge.
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge; chmod 0400 /etc/munge/munge.key; chmod 0755 /run/munge
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged --foreground & pids+=($!)
  for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null

# slurm.conf for one node (ARCHITECTURE.md: "Scale beyond one machine").
node=$(hostname -s)
mkdir -p "$WORK/slurm/state" "$WORK/slurm/spool"
export SLURM_CONF="$WORK/slurm/slurm.conf"
cat >"$SLURM_CONF" <<CONF
ClusterName=verifier-smoke
SlurmctldHost=$node
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=$WORK/slurm/state
SlurmdSpoolDir=$WORK/slurm/spool
SlurmctldPidFile=$WORK/slurm/slurmctld.pid
SlurmdPidFile=$WORK/slurm/slurmd.pid
SlurmctldLogFile=$WORK/slurm/slurmctld.log
SlurmdLogFile=$WORK/slurm/slurmd.log
NodeName=$node CPUs=$(nproc) State=UNKNOWN
PartitionName=smoke Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -D -f "$SLURM_CONF" & pids+=($!)
slurmd -D -f "$SLURM_CONF" & pids+=($!)
for _ in $(seq 100); do sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed)' && break; sleep 0.2; done
sinfo -h -o %T | grep -qE '^(idle|mixed)' || { say "slurmd did not come up: $(tail -5 "$WORK/slurm/slurmd.log")"; exit 1; }
say "cluster up: node $node, $(nproc) CPUs, config $SLURM_CONF"

# verifier, installed the way the README installs it on a cluster, and the demo's model and data.
dotnet publish "$repo/src/Verifier.Cli" -c Release -o "$WORK/bin" --nologo -v quiet >/dev/null
export VERIFIER="$WORK/bin/verifier"
cd "$WORK"
"$VERIFIER" train-model --task max-of-k --out model --force >/dev/null
"$VERIFIER" make-data --task max-of-k --count "$SEQUENCES" --seed 1 --out data.jsonl --force >/dev/null
export MODEL="$WORK/model" DATA="$WORK/data.jsonl" STRATEGY SHARDS OUT="$WORK/shards" DB="$WORK/verifier.db"
t_setup=$(date +%s.%N)

read -r bound merge checks verdict < <("$here/submit.sh" | tail -1)
say "submitted bound $bound, merge $merge, checks $checks, verdict $verdict"
deadline=$(( $(date +%s) + TIMEOUT ))
while squeue -h -j "$bound,$merge,$checks,$verdict" 2>/dev/null | grep -q .; do
  [ "$(date +%s)" -lt "$deadline" ] || { say "timed out after $TIMEOUT s"; squeue; exit 1; }
  sleep 1
done
t_done=$(date +%s.%N)

# Every job must have completed; work = the jobs' own run time along the critical path.
work=0
for j in "$bound" "$merge" "$checks" "$verdict"; do
  states=$(scontrol -o show job "$j" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | sort -u | tr '\n' ' ')
  [ "$states" = "JobState=COMPLETED " ] || { say "job $j: ${states:-gone}"; cat "$WORK"/verifier-*"$j"*.out 2>/dev/null | tail -20; exit 1; }
  longest=$(scontrol -o show job "$j" | grep -o 'RunTime=[0-9:-]*' | cut -d= -f2 | awk -F: '{ s = $1*3600 + $2*60 + $3; if (s > m) m = s } END { print m + 0 }')
  work=$((work + longest))
done
out=$(ls "$WORK"/verifier-verdict-"$verdict".out)
b0=$(grep -o 'b₀ = [0-9.eE+-]*' "$WORK"/verifier-merge-"$merge".out | tail -1)
summary=$(awk -v s="$t0" -v a="$t_setup" -v d="$t_done" -v w="$work" 'BEGIN { printf "set-up %.1f s, jobs %.1f s (%d s running along the critical path, %.1f s scheduling and start-up)", a - s, d - a, w, d - a - w }')
say "$summary"
say "merged $STRATEGY over $SHARDS shards: $b0"
echo "smoke: merged $b0 ($SHARDS shards, $STRATEGY); $(grep -E '^(accepted|rejected)' "$out" | tail -1)"
grep -q '^accepted' "$out"
