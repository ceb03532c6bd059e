"""GPU benchmark: the runner process with live inspection vs a bare loop, on CUDA.

Run: python benchmarks/gpu.py [--device cuda] [--pairs 3] [--only A] [--quick]

Cases (the issue's):
  (A) one 4096x4096 tensor, Adam, manual gradient (set once);
  (B) a ResNet-18-sized CNN (11.2 M parameters) on synthetic 3x32x32 images, batch 256,
      SGD with momentum 0.9 (benchmarks/gpu_tasks/resnet18_synthetic.py);
  (C) a small transformer (nn.TransformerEncoder, 6 layers, d_model 512) in bfloat16 on
      synthetic tokens, AdamW (benchmarks/gpu_tasks/transformer_synthetic.py).

For each: bare steps/s, runner steps/s with live inspection (snapshots at 40 a second of
a window showing one tensor: its value, gradient and state travel as previews, the rest
as statistics), their ratio (target >= 0.97), the median of ``--pairs`` interleaved
pairs with the spread, as harness.py measures; and the snapshot bytes copied from the
device per second (core.transfer's count in the runner process). Both sides run in a
runner process forked from the same fork server, from the same spec (harness.bare_loop:
``Session(spec)`` builds the bare loop's tensors, model and data). The bare loop ends
with ``torch.cuda.synchronize()``; the runner's time ends at the snapshot that shows the
last step (reading it waits for the device). The first pair checks that both sides end
on identical parameters.

``--quick`` (a smoke run): few steps, 1 pair. ``--deterministic``: every session with the
spec's ``deterministic`` option (the bare loops under the same mode); without it, ``same``
may be False where CUDA kernels are not deterministic (attention's backward, atomics). ``--device cpu`` with
``OPTIMLAB_BENCH_SMALL=1`` runs shrunken models on the CPU: it checks the script, not
the figures.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402

from core import devices, edits, transfer, trust  # noqa: E402
from core.runner_process import ProcessRunner, threads_for  # noqa: E402
from core.spec import GradientSpec, ManualGrad, SessionSpec, TensorSpec  # noqa: E402
from core.task_spec import TaskSpec  # noqa: E402
from harness import (SNAPSHOT_HZ, Run, _read_until, bare_loop, params_of, ratio_summary, runner_threads,  # noqa: E402
                     same, thread_cpu, warm_step)

TASKS = Path(__file__).resolve().parent / "gpu_tasks"
SIDE = 512 if os.environ.get("OPTIMLAB_BENCH_SMALL") == "1" else 4096


@dataclass(frozen=True)
class GpuCase:
    key: str
    label: str
    spec: SessionSpec
    steps: int
    shown: str  # the tensor the window shows


def cases(device: str, deterministic: bool = False) -> list[GpuCase]:
    def task(script: str, batch: int) -> GradientSpec:
        path = str(TASKS / script)
        trust.trust(path, trust.read_script(path)[1])  # travels to the runner processes with them
        return GradientSpec("task", task=TaskSpec(kind="script", script=path, batch_size=batch,
                                                  eval_every=1_000_000, seed=0))
    return [
        GpuCase("A", f"(A) {SIDE}x{SIDE} Adam, manual gradient", SessionSpec(
            optimizer="Adam", device=device, deterministic=deterministic,
            tensors=[TensorSpec("w", (SIDE, SIDE), init="zeros", grad=ManualGrad())]), 3000, "w"),
        GpuCase("B", "(B) ResNet-18-sized CNN, 3x32x32, batch 256, SGD+momentum", SessionSpec(
            optimizer="SGD", hparams={"lr": 0.05, "momentum": 0.9}, zero_grad_each_step=True, device=device,
            deterministic=deterministic, gradient=task("resnet18_synthetic.py", 256)), 300,
            "layers.3.1.conv2.weight"),
        GpuCase("C", "(C) transformer 6x512 bf16, AdamW", SessionSpec(
            optimizer="AdamW", hparams={"lr": 3e-4}, zero_grad_each_step=True, device=device,
            deterministic=deterministic, gradient=task("transformer_synthetic.py", 32)), 400,
            "encoder.layers.5.linear1.weight"),
    ]


# ----- the two sides (module-level: they run in the runner process, sent by name) -----

def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare_gpu(session, spec: SessionSpec, n: int) -> Run:
    """``n`` bare steps after a warm-up of 3, timed to a device synchronize (runs on a runner
    process's runner thread, as the runner's steps do)."""
    step, s = bare_loop(spec)
    torch.set_num_threads(threads_for(s))  # the runner process's count (what its CPU side runs with)
    with devices.deterministic(spec.deterministic):  # as the session steps such a spec
        for _ in range(3):
            step()
        _sync(s.device)
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(n):
            step()
        _sync(s.device)
        c1, t1 = time.thread_time(), time.perf_counter()
    return Run(n / (t1 - t0), n / (c1 - c0), torch.get_num_threads(), params_of(s))


def warm3(session) -> None:
    for _ in range(3):
        warm_step(session)


def copied(session) -> int:
    return transfer.copied_bytes()["device"]


def time_bare(spec: SessionSpec, n: int) -> Run:
    r = ProcessRunner(None, max_hz=SNAPSHOT_HZ)
    try:
        return r.call(bare_gpu, spec, n).result(3600)
    finally:
        r.stop()


def time_runner(c: GpuCase, n: int) -> tuple[Run, float]:
    """The runner process stepping ``n`` times with a window's live snapshots: (run, device
    bytes copied per second)."""
    r = ProcessRunner(None, max_hz=SNAPSHOT_HZ)
    try:
        r.replace(edits.build, c.spec).result(600)
        r.call(edits.show_tensor, c.shown).result(60)  # as the main window tells its runner
        r.call(warm3).result(600)
        threads = r.call(runner_threads).result(60)
        start = r.latest().step
        c0, b0 = r.call(thread_cpu).result(60), r.call(copied).result(60)
        t0 = time.perf_counter()
        r.step(n)
        end, count = _read_until(r, start, n, t0)
        cpu = r.call(thread_cpu).result(60) - c0
        nbytes = r.call(copied).result(60) - b0
        params = r.call(params_of).result(600)
    finally:
        r.stop()
    run = Run(n / (end - t0), n / cpu, threads, params, count / (end - t0))
    return run, nbytes / (end - t0)


def measure(c: GpuCase, n: int, pairs: int, deadline: float = math.inf):
    """``pairs`` interleaved (bare, runner) pairs, fewer (at least one) where the next would
    end past ``deadline`` (``time.monotonic()``, judged by the last pair's length): a
    prepared GPU check must end in its slot."""
    bare, runner, rates = [], [], []
    last = 0.0
    for k in range(pairs):
        t = time.monotonic()
        if k and t + last > deadline:
            print(f"  {c.key}: time budget spent after {k} pair(s)", flush=True)
            break
        if k % 2 == 0:
            b = time_bare(c.spec, n)
            r, bps = time_runner(c, n)
        else:
            r, bps = time_runner(c, n)
            b = time_bare(c.spec, n)
        if k == 0:
            ok = same(b.params, r.params)
        b.params = r.params = None
        bare.append(b)
        runner.append(r)
        rates.append(bps)
        last = time.monotonic() - t
    return bare, runner, rates, ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--only", help="cases to run, e.g. 'AC'")
    ap.add_argument("--quick", action="store_true", help="a twentieth of the steps, 1 pair")
    ap.add_argument("--budget", type=float, default=math.inf,
                    help="seconds for all cases: a case starts no new pair past its share (at least one pair)")
    ap.add_argument("--deterministic", action="store_true",
                    help="sessions (and the bare loops) under torch.use_deterministic_algorithms(True)")
    args = ap.parse_args()
    pairs = 1 if args.quick else args.pairs
    print(f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    print(f"{'case':58s} {'bare/s':>9s} {'runner/s':>9s}  {'ratio (spread)':28s} {'snap/s':>6s} {'MB/s':>7s} same")
    todo = [c for c in cases(args.device, args.deterministic) if not args.only or c.key in args.only]
    end = time.monotonic() + args.budget
    for k, c in enumerate(todo):
        n = max(5, c.steps // 20) if args.quick else c.steps
        deadline = time.monotonic() + (end - time.monotonic()) / (len(todo) - k)  # an even share of what is left
        bare, runner, rates, ok = measure(c, n, pairs, deadline)
        ratios = [r.rate / b.rate for r, b in zip(runner, bare)]
        print(f"{c.label:58s} {statistics.median(b.rate for b in bare):9.1f} "
              f"{statistics.median(r.rate for r in runner):9.1f}  {ratio_summary(ratios):28s} "
              f"{statistics.median(r.snapshots_per_s for r in runner):6.1f} "
              f"{statistics.median(rates) / 1e6:7.2f} {ok}", flush=True)


if __name__ == "__main__":
    if os.environ.get("OPTIMLAB_BENCH_SMALL") == "1":
        print("OPTIMLAB_BENCH_SMALL=1: shrunken models (a dry run; the figures mean nothing)")
    main()
