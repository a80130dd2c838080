#!/usr/bin/env python3
"""gen_seeds_h5py.py OUT -- the h5py-written seeds of the fuzz corpora (`make fuzz-seeds`
runs it after gen_seeds, whose files it reads):

  OUT/dataset/seed-h5py-vlen   a dataset written from scratch by the schema with h5py's
                               defaults: variable-length string attributes and shard
                               names, x contiguous (2, 3) float32, y int64
  OUT/dataset/seed-h5py-gzip   uint8 x chunked and gzip-compressed, fixed-length names
  OUT/ckpt/seed-h5py-*.h5      each checkpoint seed of gen_seeds copied object by object
                               into a file in HDF5's oldest format (libver 'earliest':
                               superblock 0, version-1 object headers, no metadata
                               checksums), so mutations reach deeper into the parser

Each dataset seed is one fuzz_dataset input: a flags byte, the length of index.h5
(uint32 little-endian), index.h5, shard-00000.h5."""
import os, struct, sys, tempfile
import h5py, numpy as np

out = sys.argv[1]


def dataset_seed(name, flags, write):
    with tempfile.TemporaryDirectory() as d:
        write(d)
        idx = open(os.path.join(d, "index.h5"), "rb").read()
        sh = open(os.path.join(d, "shard-00000.h5"), "rb").read()
    with open(os.path.join(out, "dataset", name), "wb") as f:
        f.write(bytes([flags]) + struct.pack("<I", len(idx)) + idx + sh)


def index(d, shape, dtype, n, classes, names):
    with h5py.File(os.path.join(d, "index.h5"), "w") as f:
        f.attrs["format"] = "mpitrain-dataset"
        f.attrs["version"] = 1
        f.attrs["sample_shape"] = list(shape)
        f.attrs["dtype"] = dtype
        f.attrs["num_classes"] = classes
        f.attrs["num_samples"] = n
        f.attrs["scale"] = 1.0 if dtype == "float32" else 1 / 255
        f.attrs["mean"] = 0.5
        f.attrs["std"] = 0.25
        f["shards"] = names


def vlen(d):
    rng = np.random.default_rng(3)
    with h5py.File(os.path.join(d, "shard-00000.h5"), "w") as f:
        f["x"] = rng.random((5, 2, 3), dtype=np.float32)
        f["y"] = rng.integers(0, 3, 5)
    t = np.dtype([("file", h5py.string_dtype()), ("count", "<i8")])
    index(d, (2, 3), "float32", 5, 3, np.array([("shard-00000.h5", 5)], dtype=t))


def gz(d):
    rng = np.random.default_rng(4)
    with h5py.File(os.path.join(d, "shard-00000.h5"), "w") as f:
        f.create_dataset("x", data=rng.integers(0, 256, (4, 6), dtype=np.uint8),
                         chunks=(2, 6), compression="gzip")
        f["y"] = rng.integers(0, 2, 4).astype(np.int32)
    index(d, (6,), "uint8", 4, 2,
          np.array([(b"shard-00000.h5", 4)], dtype=[("file", "S64"), ("count", "<i8")]))


def oldest_copy(src, dst):
    with h5py.File(src, "r") as a, h5py.File(dst, "w", libver="earliest") as b:
        def copy_attrs(x, y):
            for k, v in x.attrs.items():
                y.attrs[k] = v

        def visit(name, obj):
            if isinstance(obj, h5py.Group):
                g = b.require_group(name)
                copy_attrs(obj, g)
            else:
                ds = b.create_dataset(name, data=obj[()], dtype=obj.dtype)
                copy_attrs(obj, ds)

        copy_attrs(a, b)
        a.visititems(visit)


os.makedirs(os.path.join(out, "dataset"), exist_ok=True)
dataset_seed("seed-h5py-vlen", 0, vlen)
dataset_seed("seed-h5py-gzip", 1, gz)
for name in ("sgd", "adamw"):
    oldest_copy(os.path.join(out, "ckpt", f"seed-{name}.h5"),
                os.path.join(out, "ckpt", f"seed-h5py-{name}.h5"))
