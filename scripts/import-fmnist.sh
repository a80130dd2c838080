#!/usr/bin/env bash
# Import Debian's Fashion-MNIST (package dataset-fashion-mnist) into sharded HDF5
# datasets data/fmnist/train and data/fmnist/test (skipped when they verify already).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MPITRAIN:-build/mpitrain}
SRC=$(dirname "$(dpkg -L dataset-fashion-mnist | grep 'train-images-idx3-ubyte.gz$' | head -n 1)")
OUT=${1:-data/fmnist}
for split in train:train test:t10k; do
    name=${split%%:*}; prefix=${split##*:}
    if [ -f "$OUT/$name/index.h5" ] && "$BIN" data verify "$OUT/$name" >/dev/null 2>&1; then
        continue
    fi
    shards=4; [ "$name" = test ] && shards=2
    stats=(); [ "$name" = test ] && stats=(--stats-from "$OUT/train")
    "$BIN" data import --format idx --images "$SRC/$prefix-images-idx3-ubyte.gz" "${stats[@]}" \
        --labels "$SRC/$prefix-labels-idx1-ubyte.gz" --shards $shards --out "$OUT/$name"
    "$BIN" data verify "$OUT/$name" >/dev/null
done
