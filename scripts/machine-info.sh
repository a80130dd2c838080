#!/usr/bin/env bash
# machine-info.sh [--slug | --md]: the CPU a benchmark ran on, as the bench records it.
#   --slug  a file-name-safe name of the CPU model: vendor-family-model-name, e.g.
#           "genuineintel-6-167-intel-xeon-processor", "authenticamd-25-1-amd-epyc-7b13"
#   --md    a Markdown list: model name, vendor, family/model/stepping, the vector ISA
#           mpitrain's GEMM can use (avx512f, avx2+fma), L1d/L2/L3 sizes (sysfs, CPU 0;
#           L3 shared by the CPUs listed), cores, kernel, and the GEMM kernel mpitrain
#           takes here (build/mpitrain must exist for that line)
# (default --md).  Reads /proc/cpuinfo and /sys/devices/system/cpu/cpu0/cache only.
set -euo pipefail
cd "$(dirname "$0")/.."
field() { { grep -m1 "^$1[[:space:]]*:" /proc/cpuinfo || true; } | cut -d: -f2- | sed 's/^ *//'; }
vendor=$(field vendor_id); family=$(field 'cpu family'); model=$(field model); stepping=$(field stepping)
name=$(field 'model name')
if [ "${1:-}" = --slug ]; then
    echo "$vendor-$family-$model-$name" | tr 'A-Z' 'a-z' | sed 's/([^)]*)//g; s/[^a-z0-9]\+/-/g; s/^-//; s/-$//'
    exit 0
fi
isa=()
grep -qw avx512f /proc/cpuinfo && isa+=(avx512f)
grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && isa+=(avx2+fma)
[ ${#isa[@]} -eq 0 ] && isa+=(none: portable C kernel)
caches=""
for d in /sys/devices/system/cpu/cpu0/cache/index*; do
    [ -r "$d/size" ] || continue
    t=$(cat "$d/type"); [ "$t" = Instruction ] && continue
    lvl=$(cat "$d/level"); sz=$(cat "$d/size"); sh=$(cat "$d/shared_cpu_list" 2>/dev/null || echo "?")
    caches+="${caches:+, }L$lvl${t:0:1} $sz (CPUs $sh)"
done
kernel="(build/mpitrain not built)"
if [ -x build/mpitrain ]; then
    # one training step of the default job: its banner names the kernel
    probe=$(mktemp -d)
    kernel=$({ build/mpitrain train jobs/fmnist-mlp.ini --set train.steps=1 --set data.test= \
                   --set checkpoint.every_steps=0 --set run.progress=off --set run.dir="$probe/r" 2>&1 || true; } |
             sed -n 's/.*compute: mpitrain gemm, \([a-z0-9]*\) kernels.*/\1/p' | head -n 1)
    rm -rf "$probe"
    [ -n "$kernel" ] || kernel="(not reported)"
fi
echo "- CPU: $name"
echo "- vendor, family/model/stepping: $vendor, $family/$model/$stepping"
echo "- vector ISA for mpitrain's GEMM: ${isa[*]}"
echo "- caches (CPU 0): ${caches:-unknown}"
echo "- cores: $(nproc) ($(grep -c '^processor' /proc/cpuinfo) online)"
echo "- kernel: $(uname -sr)"
echo "- mpitrain GEMM kernel taken by default: $kernel"
