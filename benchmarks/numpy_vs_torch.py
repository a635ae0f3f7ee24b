"""One training step (forward + backward + Adam update) of the NumPy LSTM vs the torch one, fp32 on CPU.

Both models hold the same weights and see the same batch, in the same process, and the repeats
alternate between them so that load from other processes hits both alike. Defaults are the report's
shapes: batch 64, 100 characters, embedding 512, hidden 512, vocabulary 6857.

Peak memory is measured in a fresh child process per framework, because ``ru_maxrss`` is a
process-wide high-water mark: the child builds the model, reads ``ru_maxrss``, runs two steps and
reads it again, so the delta is what a training step adds (activations, gradients, optimiser state,
the step's temporaries). torch allocates outside Python's allocator, so that is all we get for it;
for NumPy the child also reports tracemalloc's peak of the bytes numpy allocated during the steps.

    python benchmarks/numpy_vs_torch.py [--repeats 5] [--batch 64] [--seq 100] [--vocab 6857]

OpenBLAS: this machine may set OPENBLAS_CORETYPE=Haswell (AVX2 kernels); the script prints which
kernel numpy runs. See docs/reports/numpy-lstm-benchmark.md for both settings.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import torch

from tangpoem_hf.modeling import TangPoemConfig, TangPoemLSTM
from tangpoem_hf.numpy_lstm import Adam, NumpyLSTM

QUANTANGSHI_POEMS = 57607  # poems in chinese-poetry's quantangshi, the report's corpus


def openblas_info() -> str:
    """The OpenBLAS core numpy dispatched to (Haswell = AVX2, SkylakeX = AVX-512) and its thread count."""
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*"))
    for path in libs:
        so = ctypes.CDLL(path)
        for prefix in ("scipy_openblas_", "openblas_", ""):
            for suffix in ("64_", ""):
                core, threads = f"{prefix}get_corename{suffix}", f"{prefix}get_num_threads{suffix}"
                if hasattr(so, core) and hasattr(so, threads):
                    getattr(so, core).restype = ctypes.c_char_p
                    return f"OpenBLAS kernel {getattr(so, core)().decode()}, {getattr(so, threads)()} threads"
    return "OpenBLAS kernel unknown"


def make_steps(args: argparse.Namespace) -> tuple[Callable[[], float], Callable[[], float]]:
    """Two closures doing one full training step each on identical weights and data; they return the loss."""
    torch.manual_seed(0)
    cfg = TangPoemConfig(vocab_size=args.vocab, embedding_dim=args.embedding, hidden_size=args.hidden)
    tmodel = TangPoemLSTM(cfg).train()
    nmodel = NumpyLSTM.from_torch(tmodel, dtype=np.float32)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, args.vocab, (args.batch, args.seq))
    labels = rng.integers(1, args.vocab, (args.batch, args.seq))
    t_ids, t_labels = torch.from_numpy(ids), torch.from_numpy(labels)
    t_opt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
    n_opt = Adam(nmodel.params, lr=1e-3)

    def numpy_step() -> float:
        res = nmodel.loss_and_grads(ids, labels)
        n_opt.step(res.grads)
        return res.loss

    def torch_step() -> float:
        t_opt.zero_grad(set_to_none=True)
        loss = tmodel(t_ids, labels=t_labels).loss
        loss.backward()
        t_opt.step()
        return float(loss.detach())

    return numpy_step, torch_step


def peak_rss_kib() -> int:
    """The process's peak resident set: VmHWM where /proc has it, else ru_maxrss (KiB on Linux).

    ru_maxrss survives exec, so a child started by a big parent reports the parent's peak; VmHWM
    belongs to the new address space, and writing 5 to clear_refs resets it (see reset_peak_rss).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss() -> int:
    """Set the peak to the current RSS (Linux >= 4.0), so the next reading is this section's peak."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass
    return peak_rss_kib()


def memory_child(args: argparse.Namespace) -> None:
    """Run in a fresh process: the peak-memory growth of two steps of one framework, as JSON."""
    numpy_step, torch_step = make_steps(args)
    step = numpy_step if args.memory_child == "numpy" else torch_step
    before = reset_peak_rss()
    tracemalloc.start()
    for _ in range(2):
        step()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = peak_rss_kib()
    out = {"rss_delta_mib": (after - before) / 1024}
    if args.memory_child == "numpy":
        out["tracemalloc_peak_mib"] = traced_peak / 2**20
    print(json.dumps(out))


def measure_memory(args: argparse.Namespace, which: str) -> dict[str, float]:
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", which]
    cmd += ["--batch", str(args.batch), "--seq", str(args.seq), "--vocab", str(args.vocab)]
    cmd += ["--embedding", str(args.embedding), "--hidden", str(args.hidden)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def profile_numpy(numpy_step: Callable[[], float], repeats: int) -> None:
    """Where a NumPy step's time goes, per phase, from cProfile's cumulative time per function.

    Cumulative, not own, time: cProfile books C methods such as ``np.add.at`` or ``.max()``
    separately, so a phase is a function's cumulative time minus that of the phases nested in it.
    """
    import cProfile
    import pstats

    prof = cProfile.Profile()
    for _ in range(repeats):
        prof.runcall(numpy_step)
    cum: dict[str, float] = {}
    for (filename, _, func), (_, _, _, cumtime, _) in pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
        if filename.endswith("numpy_lstm.py"):
            cum[func] = cum.get(func, 0.0) + cumtime / repeats
    phases = {
        "LSTM forward (time loop, input projection)": cum["_layer_forward"],
        "embedding lookup + output layer forward (1 matmul)": cum["_forward"] - cum["_layer_forward"],
        "softmax + cross-entropy + its backward, in place": cum["_cross_entropy"],
        "output layer backward (2 matmuls) + embedding scatter-add": cum["_backward"] - cum["_layer_backward"],
        "LSTM backward (time loop, weight-gradient matmuls)": cum["_layer_backward"],
        "Adam update": cum["step"],
    }
    total = cum["loss_and_grads"] + cum["step"]
    print(f"numpy step phases (cProfile, mean of {repeats}; total {total:.3f} s):")
    for label, t in phases.items():
        print(f"  {t:7.3f} s  {100 * t / total:5.1f} %  {label}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per framework (after 1 warm-up)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=6857, help="vocabulary size (the real one: len(vocab.json))")
    parser.add_argument("--embedding", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--poems", type=int, default=QUANTANGSHI_POEMS, help="poems per epoch, for the estimate")
    parser.add_argument("--report-minutes", type=float, default=20.0, help="the report's training time to compare")
    parser.add_argument("--no-memory", action="store_true", help="skip the two peak-memory child processes")
    parser.add_argument("--profile", action="store_true", help="also split the NumPy step into phases")
    parser.add_argument(
        "--threads", type=int, help="BLAS/OpenMP threads for both frameworks (re-runs the script with them set)"
    )
    parser.add_argument("--memory-child", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return 0
    if args.threads and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        # both libraries read their thread counts when they load, so set them and start again
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
        rerun = [sys.executable, os.path.abspath(__file__), *(sys.argv[1:] if argv is None else argv)]
        return subprocess.run(rerun, env=env).returncode

    print(
        f"shapes: batch {args.batch}, seq {args.seq}, embedding {args.embedding}, hidden {args.hidden}, "
        f"vocab {args.vocab}; fp32, Adam"
    )
    print(
        f"numpy {np.__version__} ({openblas_info()}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}); "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); {os.cpu_count()} CPUs"
    )
    numpy_step, torch_step = make_steps(args)
    first = numpy_step(), torch_step()  # warm-up; same weights and batch, so the same loss
    print(f"first-step loss: numpy {first[0]:.6f}, torch {first[1]:.6f}")
    times: dict[str, list[float]] = {"numpy": [], "torch": []}
    for _ in range(args.repeats):
        for name, step in (("numpy", numpy_step), ("torch", torch_step)):
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, ts in times.items():
        print(f"{name:5s} step: median {med[name]:.3f} s  (min {min(ts):.3f}, max {max(ts):.3f}, n={len(ts)})")
    if args.profile:
        profile_numpy(numpy_step, args.repeats)
    if not args.no_memory:
        mem = {which: measure_memory(args, which) for which in ("numpy", "torch")}
        print(
            f"peak memory of a step: numpy +{mem['numpy']['rss_delta_mib']:.0f} MiB RSS "
            f"(tracemalloc peak {mem['numpy']['tracemalloc_peak_mib']:.0f} MiB), "
            f"torch +{mem['torch']['rss_delta_mib']:.0f} MiB RSS"
        )
    steps = args.poems // args.batch
    print(
        f"one epoch of the report's recipe ({args.poems} poems / batch {args.batch} = {steps} steps): "
        f"numpy {steps * med['numpy'] / 60:.1f} min, torch {steps * med['torch'] / 60:.1f} min "
        f"(the report: ~{args.report_minutes:g} min)"
    )
    print(f"ratio numpy/torch: {med['numpy'] / med['torch']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
