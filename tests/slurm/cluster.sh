#!/usr/bin/env bash
# cluster.sh — a real Slurm cluster on this host, on loopback, for the tests: munged,
# slurmctld and two slurmd ("nodes" n1 and n2, 1 CPU each, both this host) with their
# own key, sockets, ports, config, state and logs under DIR.  Nothing outside DIR is
# written or read (the distribution's /etc/slurm and /etc/munge are not used), and no
# system service is touched.  Needs root (SlurmUser=root) and the Debian packages
# slurmctld, slurmd, slurm-client, munge (scripts/install-deps.sh installs them).
#
#   tests/slurm/cluster.sh start DIR    write DIR/etc/slurm.conf, start the daemons, wait
#                                       until both nodes are idle; prints the line to
#                                       source (also in DIR/env): export SLURM_CONF=...
#   tests/slurm/cluster.sh stop DIR     cancel every job, stop the daemons by the PIDs in
#                                       DIR/pids (TERM, then KILL after 2 s) and kill any
#                                       job process of this cluster left (leftovers below)
#   tests/slurm/cluster.sh status DIR   sinfo and squeue of that cluster
#
# Partitions: `low` (default; preemptible: its jobs are requeued when a `high` job needs
# their nodes, after the job's --signal and a 20 s grace time) and `high`.  Open MPI is
# told to use TCP over loopback between the fake nodes (a TaskProlog), because the two
# "nodes" share one kernel and their shared-memory segments would collide.
# Exit: 0, or 1 with the reason and the tail of the daemon logs.
set -euo pipefail
cmd=${1:-}; DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 64; }
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
export SLURM_CONF=$DIR/etc/slurm.conf
NODES=(n1 n2)

die() { echo "cluster.sh: $*" >&2; for f in "$DIR"/log/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 15 "$f" >&2; }; done; exit 1; }

free_ports() { # N: N TCP ports free on 127.0.0.1 now
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

write_conf() { # CTLD_PORT N1_PORT N2_PORT
    local host; host=$(hostname -s)
    cat > "$DIR/etc/slurm.conf" <<EOF
# written by tests/slurm/cluster.sh: a two-node test cluster on 127.0.0.1
ClusterName=mpitrain-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$1
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire=5: a requeued job may start again after ~6 s instead of ~120 s
AuthInfo=socket=$DIR/munge/munge.socket.2,cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# per-node temporary directory: PMIx keeps its rendezvous files there
TmpFS=$DIR/tmp/%n
ProctrackType=proctrack/pgid
TaskPlugin=task/none
TaskProlog=$DIR/etc/task-prolog.sh
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,batch_sched_delay=0,bf_interval=1
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
JobRequeue=1
ReturnToService=2
KillWait=10
MinJobAge=600
InactiveLimit=0
SlurmdTimeout=60
NodeName=n1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$2 CPUs=1 RealMemory=1000 State=UNKNOWN
NodeName=n2 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$3 CPUs=1 RealMemory=1000 State=UNKNOWN
PartitionName=low Nodes=n1,n2 Default=YES PriorityTier=1 PreemptMode=REQUEUE GraceTime=20 MaxTime=INFINITE State=UP
PartitionName=high Nodes=n1,n2 PriorityTier=2 PreemptMode=OFF MaxTime=INFINITE State=UP
EOF
    cat > "$DIR/etc/task-prolog.sh" <<'EOF'
#!/bin/sh
# Open MPI between the fake nodes (one kernel): TCP over loopback, no shared memory
echo "export OMPI_MCA_btl=self,tcp"
echo "export OMPI_MCA_btl_tcp_if_include=lo"
echo "export OMPI_MCA_oob_tcp_if_include=lo"
EOF
    chmod 755 "$DIR/etc/task-prolog.sh"
}

start_bg() { # NAME COMMAND...: start a daemon in the foreground mode, in the background
    local name=$1; shift
    setsid "$@" >>"$DIR/log/$name.out" 2>&1 </dev/null &   # own session: a Ctrl-C of the caller does not reach it
    echo "$name $!" >> "$DIR/pids"
}

wait_for() { # SECONDS WHAT COMMAND...: until COMMAND succeeds
    local to=$1 what=$2 t=0; shift 2
    until "$@" >/dev/null 2>&1; do
        sleep 0.2; t=$((t + 1))
        [ $t -lt $((to * 5)) ] || die "$what not ready after ${to}s"
    done
}

nodes_idle() { [ "$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u | grep -c ' idle$')" -eq ${#NODES[@]} ]; }

start() {
    for b in munged slurmctld slurmd sbatch scontrol; do
        command -v "$b" >/dev/null || die "$b not found: install slurmctld slurmd slurm-client munge (scripts/install-deps.sh)"
    done
    [ ! -s "$DIR/pids" ] || die "$DIR/pids exists: a cluster may be running there (stop it first)"
    mkdir -p "$DIR"/{etc,state,run,log,munge,tmp}
    for n in "${NODES[@]}"; do mkdir -p "$DIR/spool/$n" "$DIR/tmp/$n"; done
    chmod 700 "$DIR/munge"
    local ports; read -r -a ports <<<"$(free_ports 3)"
    write_conf "${ports[@]}"
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    : > "$DIR/pids"
    start_bg munged munged -F -f --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket.2" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed"
    wait_for 10 munged test -S "$DIR/munge/munge.socket.2"
    start_bg slurmctld slurmctld -D -c -f "$SLURM_CONF"
    wait_for 20 slurmctld scontrol ping
    for n in "${NODES[@]}"; do start_bg "slurmd-$n" slurmd -D -N "$n" -f "$SLURM_CONF"; done
    wait_for 30 "the nodes" nodes_idle
    echo "export SLURM_CONF=$SLURM_CONF" > "$DIR/env"
    echo "export SLURM_CONF=$SLURM_CONF"
}

# job processes left (slurmstepd and the tasks it started): those that hold a file under
# DIR, and those whose environment names this cluster's SLURM_CONF and a job; never this
# process or its ancestors (a test run inside some other Slurm job)
leftovers() {
    local p pid anc=" " a=$$
    while [ "$a" -gt 1 ] 2>/dev/null; do anc+="$a "; a=$(awk '{print $4}' "/proc/$a/stat" 2>/dev/null || echo 0); done
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        case $anc in *" $pid "*) continue ;; esac
        if ls -l "$p/fd" "$p/cwd" 2>/dev/null | grep -q -- "-> $DIR/"; then echo "$pid"; continue; fi
        local env; env=$( { tr '\0' '\n' < "$p/environ"; } 2>/dev/null) || continue
        if grep -qxF "SLURM_CONF=$SLURM_CONF" <<<"$env" && grep -q '^SLURM_JOB_ID=' <<<"$env"; then echo "$pid"; fi
    done
}

alive() { # PID: running (a zombie, which nobody may reap here, is not)
    local st; st=$(sed -n 's/^[0-9]* (.*) \([A-Z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
wait_gone() { # TENTHS PID...: until none is alive, at most TENTHS x 0.1 s
    local n=$1 p; shift
    while [ "$n" -gt 0 ]; do
        for p in "$@"; do alive "$p" && break; done
        alive "$p" || return 0
        sleep 0.1; n=$((n - 1))
    done
    return 1
}

stop() {
    [ -f "$DIR/pids" ] || return 0
    # quick enough for a test runner's timeout (TERM, then KILL 5 s later): about 4 s at most
    if timeout 2 scontrol ping >/dev/null 2>&1; then
        local jobs; jobs=$(timeout 2 squeue -h -o %A 2>/dev/null || true)
        [ -z "$jobs" ] || timeout 2 scancel --full --quiet $jobs 2>/dev/null || true
        local t=0
        while [ -n "$(timeout 2 squeue -h -t running,completing -o %A 2>/dev/null)" ] && [ $t -lt 10 ]; do sleep 0.2; t=$((t + 1)); done
    fi
    local name pid pids=()
    while read -r name pid; do pids+=("$pid"); done < <(tac "$DIR/pids")   # slurmd, slurmctld, munged
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait_gone 15 "${pids[@]}" || kill -KILL "${pids[@]}" 2>/dev/null || true
    local left; left=$(leftovers)
    if [ -n "$left" ]; then
        kill -KILL $left 2>/dev/null || true
        wait_gone 10 $left || true
    fi
    rm -f "$DIR/pids"
}

case $cmd in
start) start ;;
stop) stop ;;
status) sinfo; squeue ;;
*) echo "cluster.sh: unknown command $cmd (start | stop | status)" >&2; exit 64 ;;
esac
