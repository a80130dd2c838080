# damage.py — byte surgery for tests/e2e/test_ckpt_damage.sh.
#   damage.py flip SRC DST SEED LIMIT [COUNT]
#                                       DST = SRC with 1-16 random bytes (random.Random(SEED))
#                                       flipped in its first LIMIT bytes; with COUNT, DST is
#                                       a pattern ("t%02d.h5") for COUNT files of seeds
#                                       SEED, SEED + 1, ...
#   damage.py unseal SRC DST            DST = checkpoint SRC as mpitrain 0.1.0 wrote it: no
#                                       seal, string attributes variable-length (in the
#                                       global heap; h5py writes its strings so too)
#   damage.py array FILE DATASET BYTE  flip bit 4 of byte BYTE of DATASET's data in FILE
#   damage.py heap FILE                 the free-space object of FILE's first global heap
#                                       gets size 0: HDF5 then loops for ever reading any
#                                       variable-length string in that heap
import random
import struct
import sys


def flip(src, dst, seed, limit):
    r = random.Random(seed)
    b = bytearray(open(src, "rb").read())
    for _ in range(r.randint(1, 16)):
        b[r.randrange(0, min(limit, len(b)))] ^= r.randint(1, 255)
    open(dst, "wb").write(bytes(b))


def unseal(src, dst):
    import h5py
    b = open(src, "rb").read()
    assert b.startswith(b"mpitrain checkpoint seal 1\n"), "not a sealed checkpoint"
    open(dst, "wb").write(b[512:])

    def vlen(name, obj):
        for k, v in list(obj.attrs.items()):
            if isinstance(v, bytes):
                del obj.attrs[k]
                obj.attrs[k] = v.decode()
    with h5py.File(dst, "r+") as f:
        vlen("/", f)
        f.visititems(vlen)


def array(path, dataset, byte):
    import h5py
    with h5py.File(path, "r") as h:
        off = h[dataset].id.get_offset() + byte
    with open(path, "r+b") as f:
        f.seek(off)
        c = f.read(1)
        f.seek(off)
        f.write(bytes([c[0] ^ 0x10]))


def heap(path):
    d = bytearray(open(path, "rb").read())
    at = d.find(b"GCOL")
    assert at >= 0, "%s has no global heap" % path
    end, p = at + struct.unpack_from("<Q", d, at + 8)[0], at + 16
    while p + 16 <= end:
        idx, size = struct.unpack_from("<H", d, p)[0], struct.unpack_from("<Q", d, p + 8)[0]
        if idx == 0:
            struct.pack_into("<Q", d, p + 8, 0)
            open(path, "wb").write(bytes(d))
            return
        p += 16 + (size + 7) // 8 * 8
    sys.exit("no free-space object in the global heap of %s" % path)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "flip" and len(args) == 5:
        for i in range(int(args[4])):
            flip(args[0], args[1] % i, int(args[2]) + i, int(args[3]))
    elif cmd == "flip":
        flip(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "unseal":
        unseal(args[0], args[1])
    elif cmd == "array":
        array(args[0], args[1], int(args[2]))
    elif cmd == "heap":
        heap(args[0])
    else:
        sys.exit("usage: damage.py flip|unseal|array|heap ...")
