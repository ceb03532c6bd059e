"""Engine benchmark: the runner stepping continuously with live snapshots vs a bare torch loop.

Run: python benchmarks/engine.py [--quick]
Prints steps/s of both and their ratio (runner / bare) for each case. Each side runs the
same work (same tensors, same optimizer, same gradient source) several times, alternating,
and the best run of each is kept, so background noise hurts both alike.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core import edits, objectives  # noqa: E402
from core.runner import Runner  # noqa: E402
from core.runner_process import ProcessRunner  # noqa: E402
from core.session import Session  # noqa: E402
from core.spec import GradientSpec, ManualGrad, SessionSpec, TensorSpec  # noqa: E402
from core.task_spec import TaskSpec  # noqa: E402
from core.tasks import Task  # noqa: E402

POLL = 0.025  # the GUI reads the latest snapshot about this often
SNAPSHOT_HZ = 40  # as the app asks of its runner (app/bridge.py)


def case_seed():
    spec = SessionSpec(optimizer="SGD", hparams={"lr": 0.1, "momentum": 0.9}, set_to_none=False,
                       tensors=[TensorSpec("weight", (2, 2), init="values",
                                           values=[[-0.0947, 1.4217], [-1.3, -1.0501]], grad=ManualGrad())])

    def bare():
        w = torch.tensor([[-0.0947, 1.4217], [-1.3, -1.0501]], requires_grad=True)
        w.grad = torch.ones(2, 2)
        opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
        return opt.step
    return "(a) seed 2x2 SGD, manual gradient", spec, bare, 40_000


def case_rosenbrock():
    spec = SessionSpec(optimizer="Adam", hparams={"lr": 0.01}, zero_grad_each_step=True,
                       tensors=[TensorSpec("xy", (2,), init="values", values=[-1.5, 2.0])],
                       gradient=GradientSpec("objective", objective="rosenbrock"))

    def bare():
        xy = torch.tensor([-1.5, 2.0], requires_grad=True)
        opt = torch.optim.Adam([xy], lr=0.01)

        def step():
            opt.zero_grad(set_to_none=True)
            objectives.rosenbrock([xy]).backward()
            opt.step()
        return step
    return "(b) Rosenbrock, Adam", spec, bare, 15_000


def case_mlp():
    shapes = [("fc1.weight", (128, 64)), ("fc1.bias", (128,)), ("fc2.weight", (10, 128)), ("fc2.bias", (10,))]
    spec = SessionSpec(optimizer="Adam", zero_grad_each_step=True, seed=0,
                       tensors=[TensorSpec(n, s, init="normal", std=0.1) for n, s in shapes],
                       gradient=GradientSpec("objective", objective="rosenbrock"))

    def bare():
        s = Session(spec)  # same initial values; the loop below is plain torch
        params = [p.detach().clone().requires_grad_(True) for p in s.param_list]
        opt = torch.optim.Adam(params)

        def step():
            opt.zero_grad(set_to_none=True)
            objectives.rosenbrock(params).backward()
            opt.step()
        return step
    # rosenbrock, not the quadratic: Adam drives a quadratic's parameters into denormal floats,
    # whose arithmetic is many times slower, so steps/s would depend on how far the run got
    return "(c) 64-128-10 MLP parameters, Adam, backward", spec, bare, 8_000


def case_big():
    spec = SessionSpec(optimizer="Adam", tensors=[TensorSpec("w", (4096, 4096), init="zeros", grad=ManualGrad())])

    def bare():
        w = torch.zeros(4096, 4096, requires_grad=True)
        w.grad = torch.ones(4096, 4096)
        opt = torch.optim.Adam([w])
        return opt.step
    return "(d) 4096x4096 Adam, manual gradient", spec, bare, 100


def case_digits():
    ts = TaskSpec(kind="digits_mlp", batch_size=32, eval_every=1_000_000, seed=0)
    spec = SessionSpec(optimizer="Adam", zero_grad_each_step=True, gradient=GradientSpec("task", task=ts))

    def bare():
        task = Task(ts)  # the same model, data and order; the loop is plain torch
        opt = torch.optim.Adam([{"params": [p for n, p in task.named_parameters() if n.startswith(layer)]}
                                for layer in ("fc1.", "out.")])

        def step():
            opt.zero_grad(set_to_none=True)
            task.loss(task.next_batch()).backward()
            opt.step()
        return step
    return "(e) digits 64-64-10 MLP, Adam, batches of 32", spec, bare, 4_000


def time_to_accuracy(target: float = 0.9, max_steps: int = 20_000):
    """Steps and seconds to reach ``target`` validation accuracy on digits, default hyperparameters."""
    rows = []
    for name, opt, hp in (("SGD", "SGD", {}), ("SGD+momentum 0.9", "SGD", {"momentum": 0.9}),
                          ("Adam", "Adam", {}), ("AdamW", "AdamW", {})):
        ts = TaskSpec(kind="digits_mlp", batch_size=32, eval_every=10, seed=0)
        s = Session(SessionSpec(optimizer=opt, hparams=hp, zero_grad_each_step=True,
                                gradient=GradientSpec("task", task=ts)))
        t0 = time.perf_counter()
        reached = None
        while s.step_count < max_steps:
            s.run(10)
            if s.last_eval.get("val_accuracy", 0.0) >= target:
                reached = s.step_count
                break
        rows.append((name, reached, time.perf_counter() - t0, s.last_eval.get("val_accuracy", 0.0)))
    return rows


def time_bare(make, n):
    """The bare loop runs on a worker thread too, as the runner does (torch's intra-op
    threads behave differently on the main thread under load, which would skew the ratio)."""
    out = []

    def work():
        step = make()
        step()  # warm-up
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        out.append(n / (time.perf_counter() - t0))
    t = threading.Thread(target=work)
    t.start()
    t.join()
    return out[0]


def warm_step(session) -> None:
    session.step_once()


def time_runner(spec, n, process: bool = False):
    # built and warmed up on the runner thread, as the bare loop is on its own thread: torch
    # work on the main thread would leave its OpenMP team behind, slowing the runner 3x.
    # --process: the app's runner, in its own process (started blank, then built there)
    if process:
        r = ProcessRunner(None, max_hz=SNAPSHOT_HZ)
        r.replace(edits.build, spec).result()
    else:
        r = Runner(lambda: Session(spec), max_hz=SNAPSHOT_HZ)
    r.call(warm_step).result()
    try:
        start_step = r.latest().step
        seen = set()
        t0 = time.perf_counter()
        r.step(n)
        while True:
            snap = r.latest()
            seen.add(snap.seq)
            if snap.step >= start_step + n and not snap.running:
                break
            time.sleep(POLL)
        elapsed = time.perf_counter() - t0
    finally:
        r.stop()
    return n / elapsed, len(seen), elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer steps (a smoke run, noisier)")
    ap.add_argument("--only", help="run only the cases whose label starts with this, e.g. '(c)'")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--process", action="store_true",
                    help="measure the runner in its own process, as the app runs it")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeats} runs each")
    print(f"{'case':46s} {'bare steps/s':>13s} {'runner steps/s':>15s} {'ratio':>6s} {'snapshots/s':>12s}")
    for case in (case_seed, case_rosenbrock, case_mlp, case_big, case_digits):
        name, spec, bare, n = case()
        if args.only and not name.startswith(args.only):
            continue
        if args.quick:
            n = max(10, n // 10)
        best_bare = best_run = 0.0
        snaps = 0.0
        for k in range(args.repeats):
            # alternate which side goes first: the first run in a process is often the fastest
            if k % 2 == 0:
                best_bare = max(best_bare, time_bare(bare, n))
            rate, seen, elapsed = time_runner(spec, n, args.process)
            if rate > best_run:
                best_run, snaps = rate, seen / elapsed
            if k % 2 == 1:
                best_bare = max(best_bare, time_bare(bare, n))
        print(f"{name:46s} {best_bare:13.1f} {best_run:15.1f} {best_run / best_bare:6.3f} {snaps:12.1f}")
    print()
    print("time to 90% validation accuracy, digits MLP (default hyperparameters, batches of 32, eval every 10 steps)")
    print(f"{'optimizer':18s} {'steps':>7s} {'seconds':>8s} {'val acc':>8s}")
    for name, steps, secs, acc in time_to_accuracy(max_steps=2_000 if args.quick else 20_000):
        shown = str(steps) if steps is not None else "not reached"
        print(f"{name:18s} {shown:>7s} {secs:8.2f} {acc:8.3f}")


if __name__ == "__main__":
    main()
