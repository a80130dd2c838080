#!/usr/bin/env bash
# mpirun with the flags this project needs everywhere: oversubscription allowed (tests
# run 4 ranks on 2 cores), root allowed (CI runs as root), no single-copy mechanism
# (containers often forbid CMA/ptrace; vader then copies through shared memory).
# Usage: scripts/mpirun.sh NP COMMAND...
set -euo pipefail
np=$1; shift
extra=()
[ "$(id -u)" -eq 0 ] && extra+=(--allow-run-as-root)
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
export OPENBLAS_NUM_THREADS=1
exec mpirun -np "$np" --oversubscribe --bind-to none "${extra[@]}" "$@"
