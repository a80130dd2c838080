#!/usr/bin/env bash
# Installs with apt-get what mpitrain's build, tests, benchmarks and main job need.
# Idempotent: prints nothing and exits 0 when everything is already installed.
# The Slurm test (tests/e2e/test_slurm.sh) needs slurmctld, slurmd, slurm-client and
# munge; the sweep plots need gnuplot.  Their packages would start system daemons (munged,
# slurmctld, slurmd with the distribution's config): a policy-rc.d that refuses every
# start is in place while apt-get runs (unless the machine already has one), so nothing
# starts; the test starts its own daemons with its own config (tests/slurm/cluster.sh).
set -euo pipefail
PKGS=(
  build-essential pkg-config make
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  libopenblas-dev libcmocka-dev libinih-dev libxxhash-dev zlib1g-dev
  clang-14 libclang-rt-14-dev   # libFuzzer harnesses: make fuzz, tests/e2e/test_fuzz_smoke.sh
  dataset-fashion-mnist
  procps python3 python3-h5py python3-numpy python3-torch
  slurmctld slurmd slurm-client munge gnuplot-nox
)
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then   # refuse service starts during the install (invoke-rc.d, systemd)
    printf '#!/bin/sh\n# mpitrain install-deps: no service starts during the install\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
