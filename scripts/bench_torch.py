#!/usr/bin/python3
"""bench_torch.py -- the PyTorch reference for mpitrain's benchmarks.

Trains the same MLP (784-512-512-10, ReLU, softmax cross-entropy, SGD momentum 0.9,
lr 0.05, batch 128) on the same data: an mpitrain dataset directory (docs/dataset-format.md,
read with h5py), loaded once into one float tensor and normalised the same way
((x * scale - mean) / std).  Loading is not timed, as in mpitrain's benchmark.

Modes (run with /usr/bin/python3, which has torch and h5py):

  mlp --data DIR [--threads T] [--openblas-threads N] [--best]
        one process; prints  impl,threads,batch,samples_per_s  (median of --repeats
        runs of --steps steps after --warmup steps).  --best runs the three single-process
        thread settings, each in a fresh process (set_num_threads(1),
        set_num_threads(2), set_num_threads(1) with OPENBLAS_NUM_THREADS=1), prints
        each line and names the fastest on stderr.
  ddp --data DIR --nproc 2
        DistributedDataParallel over gloo on NPROC local processes (1 thread each,
        batch/NPROC rows per process, same global batch); prints the global samples/s.
  train --config JOB.ini [--set sec.key=value ...] [--epochs E]
        trains the job's model with the job's optimizer and schedule (mpitrain's
        semantics: decoupled weight decay, linear warmup, cosine to min_lr, global-norm
        clipping) and prints the test accuracy after every epoch: the accuracy
        reference for a job file.

--header prints the CSV header first; notes (torch version, OpenBLAS kernels and
threads, the environment that matters) go to stderr as "# ..." lines.  As mpitrain
does (src/main.c), the script re-executes itself with OPENBLAS_CORETYPE=Haswell when
that is unset and OpenBLAS fell back to its slow generic Prescott kernels on a CPU
with AVX2+FMA (MPITRAIN_BLAS_CORETYPE=keep disables this), so both run the same
kernels.  Exit status 0, or 2 on a usage or data error.
"""
import argparse
import configparser
import math
import os
import socket
import statistics
import subprocess
import sys
import time

IMPL = "torch"


def die(msg):
    print(f"bench_torch.py: {msg}", file=sys.stderr)
    sys.exit(2)


def blas_pick_kernels():
    """Run under the OpenBLAS kernels mpitrain uses (src/main.c): OpenBLAS 0.3.21 does not
    know some CPU models and falls back to its generic Prescott kernels, 3-7x slower;
    mpitrain then re-executes itself with OPENBLAS_CORETYPE=Haswell if the CPU has AVX2
    and FMA, and so does this script, before torch is loaded.
    MPITRAIN_BLAS_CORETYPE=keep disables it, as it does for mpitrain."""
    import ctypes

    if "OPENBLAS_CORETYPE" in os.environ or os.environ.get("MPITRAIN_BLAS_CORETYPE") == "keep":
        return
    try:
        lib = ctypes.CDLL("libblas.so.3")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        core = lib.openblas_get_corename().decode()
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except (OSError, AttributeError):
        return
    if core.lower() != "prescott" or "avx2" not in flags or "fma" not in flags:
        return
    os.environ["OPENBLAS_CORETYPE"] = "Haswell"
    os.environ["MPITRAIN_BLAS_CORETYPE"] = "auto-haswell"
    os.execv(sys.executable, [sys.executable] + sys.argv)


def blas_info():
    """'OpenBLAS <core>, <n> threads' of the OpenBLAS torch loaded (or what is known)."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            libs = sorted({ln.split()[-1] for ln in f if "libopenblas" in ln})
        if not libs:
            return "BLAS: not OpenBLAS"
        lib = ctypes.CDLL(libs[0])
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return (f"OpenBLAS {lib.openblas_get_corename().decode()} kernels, "
                f"{lib.openblas_get_num_threads()} threads")
    except OSError as e:
        return f"BLAS: {e}"


def describe_env(threads):
    import torch

    env = " ".join(f"{k}={os.environ[k]}" for k in
                   ("OPENBLAS_CORETYPE", "MPITRAIN_BLAS_CORETYPE", "OPENBLAS_NUM_THREADS",
                    "OMP_NUM_THREADS")
                   if k in os.environ)
    print(f"# torch {torch.__version__}, set_num_threads({threads}), {blas_info()}"
          f"{', ' + env if env else ''}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data

def load_dataset(d):
    """All samples of dataset directory d as (X float32 (n, features), Y int64 (n))."""
    import h5py
    import numpy as np
    import torch

    index = os.path.join(d, "index.h5")
    if not os.path.exists(index):
        die(f"{index}: no such file (import the data first: mpitrain data import, "
            f"or make train)")
    with h5py.File(index, "r") as f:
        scale = float(f.attrs.get("scale", 1.0))
        mean = float(f.attrs.get("mean", 0.0))
        std = float(f.attrs.get("std", 1.0))
        shards = f["shards"][...]
    xs, ys = [], []
    for row in shards:
        name = row["file"]
        if isinstance(name, bytes):
            name = name.decode()
        with h5py.File(os.path.join(d, name), "r") as f:
            x = f["x"][...]
            y = f["y"][...]
        if len(x) != int(row["count"]) or len(y) != len(x):
            die(f"{d}/{name}: {len(x)} samples, index says {int(row['count'])}")
        xs.append(x.reshape(len(x), -1))
        ys.append(y)
    x = np.concatenate(xs)
    y = np.concatenate(ys).astype(np.int64)
    X = torch.from_numpy(x.astype(np.float32))
    # same float32 arithmetic as mpitrain: (x * scale - mean) / std
    X.mul_(np.float32(scale)).sub_(np.float32(mean)).div_(np.float32(std))
    return X.contiguous(), torch.from_numpy(y)


# --------------------------------------------------------------------------- model

def build_model(spec, in_dim, init="he", seed=42):
    """nn.Sequential from mpitrain's layer syntax (src/core/model.h)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers, width = [], in_dim
    for tok in spec.split():
        kind, _, arg = tok.partition(":")
        if kind == "dense":
            lin = nn.Linear(width, int(arg))
            if init == "he":
                nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0 / width))
            else:
                nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
            layers.append(lin)
            width = int(arg)
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "gelu":
            layers.append(nn.GELU())
        elif kind == "tanh":
            layers.append(nn.Tanh())
        elif kind == "dropout":
            layers.append(nn.Dropout(float(arg)))
        else:
            die(f"model.layers: unknown layer '{tok}'")
    return nn.Sequential(*layers)


MLP = "dense:512 relu dense:512 relu dense:10"


# --------------------------------------------------------------------------- mlp

def time_steps(step, warmup, steps, repeats):
    """Median steps/s of `repeats` timed runs of `steps` calls after `warmup` calls."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def make_step(model, opt, X, Y, rows, offset=0, stride=None):
    """A closure doing one SGD step on the next `rows` rows (cycling through X)."""
    import torch.nn.functional as F

    n = X.shape[0]
    stride = stride or rows
    state = {"pos": 0}

    def step():
        p = state["pos"]
        if p + stride > n:
            p = 0
        xb = X[p + offset:p + offset + rows]
        yb = Y[p + offset:p + offset + rows]
        state["pos"] = p + stride
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()

    return step


def shuffled(X, Y, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(X.shape[0], generator=g)
    return X[perm].contiguous(), Y[perm].contiguous()


def mode_mlp(a):
    if a.best:
        return mlp_best(a)
    import torch

    torch.set_num_threads(a.threads)
    X, Y = shuffled(*load_dataset(a.data), 1)
    describe_env(a.threads)
    model = build_model(MLP, X.shape[1])
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    rate = time_steps(make_step(model, opt, X, Y, a.batch), a.warmup, a.steps, a.repeats)
    impl = IMPL if a.openblas_threads is None else f"{IMPL}-openblas{a.openblas_threads}"
    if a.header:
        print("impl,threads,batch,samples_per_s")
    print(f"{impl},{a.threads},{a.batch},{rate * a.batch:.0f}", flush=True)


def mlp_best(a):
    """Each of the three thread settings in a fresh process (OpenBLAS reads its env at load)."""
    common = ["--data", a.data, "--batch", str(a.batch), "--warmup", str(a.warmup),
              "--steps", str(a.steps), "--repeats", str(a.repeats), "--lr", str(a.lr),
              "--momentum", str(a.momentum)]
    settings = [["--threads", "1"], ["--threads", "2"],
                ["--threads", "1", "--openblas-threads", "1"]]
    if a.header:
        print("impl,threads,batch,samples_per_s", flush=True)
    best = None
    for s in settings:
        cmd = [sys.executable, os.path.abspath(__file__), "mlp"] + common + s
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if r.returncode != 0:
            die(f"{' '.join(cmd)} failed with exit code {r.returncode}")
        line = r.stdout.strip().splitlines()[-1]
        print(line, flush=True)
        rate = float(line.split(",")[3])
        if best is None or rate > best[0]:
            best = (rate, " ".join(s))
    print(f"# best: {best[1]} -> {best[0]:.0f} samples/s", file=sys.stderr)


# --------------------------------------------------------------------------- ddp

def ddp_worker(rank, a, port):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", rank=rank, world_size=a.nproc)
    X, Y = shuffled(*load_dataset(a.data), 1)
    if rank == 0:
        describe_env(a.threads)
    model = DDP(build_model(MLP, X.shape[1]))  # same seed: same initial weights everywhere
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    rows = a.batch // a.nproc
    step = make_step(model, opt, X, Y, rows, offset=rank * rows, stride=a.batch)
    for _ in range(a.warmup):
        step()
    rates = []
    for _ in range(a.repeats):
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        dist.all_reduce(dt, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
        rates.append(a.steps * a.batch / dt.item())
    if rank == 0:
        if a.header:
            print("impl,threads,batch,samples_per_s")
        print(f"{IMPL}-ddp{a.nproc},{a.threads},{a.batch},{statistics.median(rates):.0f}",
              flush=True)
    dist.destroy_process_group()


def mode_ddp(a):
    import torch.multiprocessing as mp

    if a.batch % a.nproc:
        die(f"--batch {a.batch} is not a multiple of --nproc {a.nproc}")
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(ddp_worker, args=(a, port), nprocs=a.nproc, join=True)


# --------------------------------------------------------------------------- train

# mpitrain's defaults for the keys `train` uses (src/io/config.c)
DEFAULTS = {
    "model.layers": MLP, "model.init": "he",
    "data.train": "data/fmnist/train", "data.test": "data/fmnist/test", "data.shuffle": "true",
    "train.epochs": "10", "train.steps": "0", "train.batch": "128", "train.seed": "42",
    "optim.name": "sgd", "optim.lr": "0.05", "optim.momentum": "0.9", "optim.nesterov": "false",
    "optim.beta1": "0.9", "optim.beta2": "0.999", "optim.eps": "1e-8",
    "optim.weight_decay": "0", "optim.schedule": "constant", "optim.warmup_steps": "0",
    "optim.step_size": "1000", "optim.gamma": "0.1", "optim.min_lr": "0", "optim.clip_norm": "0",
}


def read_job(path, sets):
    cfg = dict(DEFAULTS)
    if path:
        cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
        if not cp.read(path):
            die(f"{path}: cannot read")
        for sec in cp.sections():
            for k, v in cp.items(sec):
                v = v.strip()
                if len(v) >= 2 and v[0] == v[-1] == '"':
                    v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                cfg[f"{sec}.{k}"] = v
    for s in sets:
        k, eq, v = s.partition("=")
        if not eq:
            die(f"--set {s}: expected section.key=value")
        cfg[k.strip()] = v.strip().strip('"')
    return cfg


def as_bool(v):
    return v.lower() in ("1", "true", "yes", "on")


def sched_lr(c, t, total):
    """mpitrain's sched_lr (src/core/sched.c)."""
    lr, warm = float(c["optim.lr"]), int(c["optim.warmup_steps"])
    if warm > 0 and t < warm:
        return lr * (t + 1) / warm
    s = t - warm
    kind = c["optim.schedule"]
    if kind == "step":
        return lr * float(c["optim.gamma"]) ** (s // int(c["optim.step_size"]))
    if kind == "cosine":
        if total <= warm:
            return lr
        f = min(1.0, s / (total - warm))
        lo = float(c["optim.min_lr"])
        return lo + (lr - lo) * 0.5 * (1.0 + math.cos(math.pi * f))
    return lr


def evaluate(model, X, Y, chunk=1000):
    import torch
    import torch.nn.functional as F

    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, X.shape[0], chunk):
            out = model(X[i:i + chunk])
            loss += F.cross_entropy(out, Y[i:i + chunk], reduction="sum").item()
            correct += (out.argmax(1) == Y[i:i + chunk]).sum().item()
    model.train()
    return loss / X.shape[0], correct / X.shape[0]


def mode_train(a):
    import torch
    import torch.nn.functional as F

    c = read_job(a.config, a.set)
    if a.epochs is not None:
        c["train.epochs"], c["train.steps"] = str(a.epochs), "0"
    torch.set_num_threads(a.threads)
    seed = int(c["train.seed"])
    X, Y = load_dataset(a.data or c["data.train"])
    test = a.test or c["data.test"]
    Xt, Yt = load_dataset(test) if test else (None, None)
    model = build_model(c["model.layers"], X.shape[1], c["model.init"], seed)
    B = int(c["train.batch"])
    per_epoch = X.shape[0] // B  # the last partial batch is dropped, as in mpitrain
    total = int(c["train.steps"]) or int(c["train.epochs"]) * per_epoch
    wd, clip = float(c["optim.weight_decay"]), float(c["optim.clip_norm"])
    if c["optim.name"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=float(c["optim.lr"]),
                                betas=(float(c["optim.beta1"]), float(c["optim.beta2"])),
                                eps=float(c["optim.eps"]), weight_decay=wd)
        sgd_wd = 0.0
    else:
        mom = float(c["optim.momentum"])
        opt = torch.optim.SGD(model.parameters(), lr=float(c["optim.lr"]), momentum=mom,
                              nesterov=as_bool(c["optim.nesterov"]) and mom > 0)
        sgd_wd = wd  # mpitrain decays SGD weights decoupled too: p -= lr * wd * p
    g = torch.Generator().manual_seed(seed)
    describe_env(a.threads)
    print(f"# {total} steps of batch {B}, "
          f"{c['optim.name']} lr {c['optim.lr']} schedule {c['optim.schedule']} "
          f"warmup {c['optim.warmup_steps']}, model {c['model.layers']}", file=sys.stderr)
    print("epoch,step,train_loss,test_loss,test_accuracy,seconds", flush=True)
    t, epoch, t0 = 0, 0, time.perf_counter()
    while t < total:
        perm = (torch.randperm(X.shape[0], generator=g) if as_bool(c["data.shuffle"])
                else torch.arange(X.shape[0]))
        run_loss, n = 0.0, 0
        for b in range(per_epoch):
            if t >= total:
                break
            idx = perm[b * B:(b + 1) * B]
            lr = sched_lr(c, t, total)
            for grp in opt.param_groups:
                grp["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(X[idx]), Y[idx])
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            if sgd_wd > 0:
                with torch.no_grad():
                    for p in model.parameters():
                        p.mul_(1.0 - lr * sgd_wd)
            opt.step()
            run_loss += loss.item()
            n += 1
            t += 1
        tl, ta = evaluate(model, Xt, Yt) if Xt is not None else (float("nan"), float("nan"))
        epoch += 1
        print(f"{epoch},{t},{run_loss / max(n, 1):.4f},{tl:.4f},{ta:.4f},"
              f"{time.perf_counter() - t0:.1f}", flush=True)


# --------------------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    sub = p.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--batch", type=int, default=128, help="global batch (default 128)")
    common.add_argument("--warmup", type=int, default=20, help="untimed steps first (20)")
    common.add_argument("--steps", type=int, default=200, help="timed steps per repeat (200)")
    common.add_argument("--repeats", type=int, default=5, help="timed repeats; median (5)")
    common.add_argument("--lr", type=float, default=0.05)
    common.add_argument("--momentum", type=float, default=0.9)
    common.add_argument("--header", action="store_true", help="print the CSV header first")
    common.add_argument("--openblas-threads", type=int, default=None,
                        help="set OPENBLAS_NUM_THREADS before torch loads")

    m = sub.add_parser("mlp", parents=[common], help="one process")
    m.add_argument("--data", default="data/fmnist/train", help="dataset directory")
    m.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1)")
    m.add_argument("--best", action="store_true", help="try the three thread settings")

    d = sub.add_parser("ddp", parents=[common], help="DDP (gloo) on local processes")
    d.add_argument("--data", default="data/fmnist/train", help="dataset directory")
    d.add_argument("--nproc", type=int, default=2, help="processes (2)")
    d.add_argument("--threads", type=int, default=1, help="torch threads per process (1)")

    t = sub.add_parser("train", help="accuracy reference for a job file")
    t.add_argument("--openblas-threads", type=int, default=None,
                   help="set OPENBLAS_NUM_THREADS before torch loads")
    t.add_argument("--config", help="job INI file (mpitrain's format)")
    t.add_argument("--set", action="append", default=[], help="sec.key=value override")
    t.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    t.add_argument("--data", default=None, help="override data.train")
    t.add_argument("--test", default=None, help="override data.test")
    t.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1)")

    a = p.parse_args()
    if a.openblas_threads is not None:
        os.environ["OPENBLAS_NUM_THREADS"] = str(a.openblas_threads)
    blas_pick_kernels()
    if a.mode != "train" and (a.warmup < 0 or a.steps < 1 or a.repeats < 1 or a.batch < 1):
        die("--warmup >= 0, --steps >= 1, --repeats >= 1 and --batch >= 1 please")
    {"mlp": mode_mlp, "ddp": mode_ddp, "train": mode_train}[a.mode](a)


if __name__ == "__main__":
    main()
