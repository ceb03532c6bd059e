"""What optimlab.watch costs a training script, and how long a 1 GB checkpoint takes to open.

    python benchmarks/watch.py [--pairs 5] [--quick] [--only cnn,adam,open] [--cnn-steps 3000] [--adam-steps 60]

Overhead: the same loop (zero_grad, loss, backward, step) on the same model and optimizer,
timed bare (no hook) and watched, both sides of a pair from the same parameters, optimizer
state and data position (so they do the same work, and end equal), in interleaved pairs (bare first, then watched first,
alternating), each pair's ratio = watched steps/s / bare steps/s; printed as the median with
the spread (min-max, interquartile range), as benchmarks/harness.py does; beside it the same
ratio in steps per CPU second of the script's process (its threads only: the load-robust
cost of the hook and the publisher thread; the listener's own process is not counted). Two settings:
- no app: watch() with no one listening (the hook counts and reads the clock);
- listener: `optimlab listen` attached in its own process, decoding every frame (about 10 a
  second, as the app gets them).
Cases: the digits CNN of core/tasks.py (Adam, batches of 32) and one 4096x4096 tensor with Adam.
torch uses one thread (``--threads``), so the listener's process does not fight the loop's
OpenMP team for the two cores of a small machine; the machine is shared and noisy.

Open: a torch.save checkpoint of about 1 GB (five 4096x4096 Linear layers and their Adam
state) opened by `open_checkpoint` and summarised by name (shapes, dtypes), then the same
with every norm (which reads every byte), and what the app's window shows at once: the first
parameter's heatmaps (value, exp_avg, exp_avg_sq) and their norms.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.harness import ratio_summary  # noqa: E402
from core.checkpoints import TensorRef, open_checkpoint, param_snapshot  # noqa: E402
from core.inspect_report import summary  # noqa: E402
from core.task_spec import TaskSpec  # noqa: E402
from core.tasks import Task  # noqa: E402
from core.watch import Watch  # noqa: E402


def cnn_case():
    task = Task(TaskSpec(kind="digits_cnn", batch_size=32, eval_every=1_000_000, seed=0))
    model = task.model
    opt = torch.optim.Adam(model.parameters())

    def step():
        opt.zero_grad()
        loss = task.loss(task.next_batch())
        loss.backward()
        return loss
    return model, opt, step, task


def adam_case():
    w = torch.nn.Parameter(torch.zeros(4096, 4096))
    w.grad = torch.full_like(w, 1e-3)
    opt = torch.optim.Adam([w])
    return None, opt, lambda: None, None


class Checkpoint:
    """Where a pair starts: parameters, optimizer state, data position and torch's generator,
    so both sides of a pair do the same work (a training run's steps are not all alike: later
    phases of the digits CNN run up to 15% slower or faster than earlier ones, which used to
    land on one side of a pair and swamp the hook's cost)."""

    def __init__(self, opt, task):
        self.opt, self.task = opt, task
        self.params = [p.detach().clone() for g in opt.param_groups for p in g["params"]]
        self.state = copy.deepcopy(opt.state_dict())
        self.data = task.state() if task is not None else None
        self.rng = torch.get_rng_state()

    def restore(self) -> None:
        with torch.no_grad():
            for p, v in zip((p for g in self.opt.param_groups for p in g["params"]), self.params):
                p.copy_(v)
        self.opt.load_state_dict(copy.deepcopy(self.state))
        if self.task is not None:
            self.task.load_state(self.data)
        torch.set_rng_state(self.rng)

    def ends(self) -> list[torch.Tensor]:
        return [p.detach().clone() for g in self.opt.param_groups for p in g["params"]]


def timed(opt, step, w: Watch | None, n: int) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second of this whole process: the training
    thread, the publisher thread and zmq's own threads)."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        loss = step()
        if w is not None and loss is not None:
            w.report(loss=loss)
        opt.step()
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def pairs(case, n: int, count: int, listener: bool) -> tuple[list[float], list[float]]:
    model, opt, step, task = case()
    w = Watch(opt, model=model, name="bench")
    proc = None
    if listener:
        proc = subprocess.Popen([sys.executable, "-m", "core.cli", "listen", w.address, "--json"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
        deadline = time.monotonic() + 60
        while not w.publisher.listening and time.monotonic() < deadline:
            timed(opt, step, w, 1)
    timed(opt, step, w, max(1, n // 10))  # warm-up, watched
    ratios, cpu_ratios = [], []
    for k in range(count):
        start = Checkpoint(opt, task)
        ends = []

        def bare():
            w._handle.remove()
            try:
                return timed(opt, step, None, n)
            finally:
                w._handle = opt.register_step_post_hook(w._post)

        def watched():
            return timed(opt, step, w, n)
        first, second = (bare, watched) if k % 2 == 0 else (watched, bare)
        start.restore()  # both sides from freshly restored tensors (the same memory layout)
        r1 = first()
        ends.append(start.ends())
        start.restore()
        r2 = second()
        ends.append(start.ends())
        b, s = (r1, r2) if k % 2 == 0 else (r2, r1)
        same = all(torch.equal(x, y) for x, y in zip(*ends))
        ratios.append(s[0] / b[0])
        cpu_ratios.append(s[1] / b[1])
        print(f"    pair {k}: bare {b[0]:,.1f} steps/s, watched {s[0]:,.1f} steps/s, ratio {s[0] / b[0]:.3f} "
              f"(CPU time {cpu_ratios[-1]:.3f}){'' if same else '; NOT the same result'}", flush=True)
    sent, dropped = w.publisher.frames_sent, w.publisher.frames_dropped
    w.close()
    if proc is not None:
        proc.terminate()
        proc.wait(10)
        print(f"    frames sent {sent:,}, dropped {dropped:,}")
    return ratios, cpu_ratios


def open_times(repeats: int) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("OPTIMLAB_BENCH_DIR")) as d:
        path = Path(d) / "big.pt"
        torch.manual_seed(0)
        model = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096, bias=True) for _ in range(5)])
        opt = torch.optim.Adam(model.parameters())
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        opt.step()
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}, path)
        size = path.stat().st_size
        del model, opt
        print(f"  checkpoint: {size / 1e9:.2f} GB")
        for norms in (False, True):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                s = summary(open_checkpoint(path), norms=norms)
                times.append(time.perf_counter() - t0)
            assert len(s["optimizers"][0]["params"]) == 10 and s["optimizers"][0]["params"][0]["name"] == "0.weight"
            what = "with every norm (reads 1 GB)" if norms else "names, shapes, dtypes"
            print(f"  open + optimizer state by name, {what}: median {statistics.median(times):.3f} s "
                  f"({min(times):.3f}-{max(times):.3f} s, {repeats} runs)")
        times = []
        for _ in range(repeats):  # what File > Open checkpoint shows at once: the first parameter, drawn
            t0 = time.perf_counter()
            info = open_checkpoint(path)
            p = info.optimizers[0].params[0]
            param_snapshot(p, 0)
            [v.norm() for v in (p.weight, *p.state.values()) if isinstance(v, TensorRef)]
            times.append(time.perf_counter() - t0)
        print(f"  open + the first parameter's heatmaps and norms (4096x4096: value, exp_avg, exp_avg_sq): "
              f"median {statistics.median(times):.3f} s ({min(times):.3f}-{max(times):.3f} s, {repeats} runs)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="cnn,adam,open")
    ap.add_argument("--cnn-steps", type=int, default=3000, help="steps a side for the digits CNN")
    ap.add_argument("--adam-steps", type=int, default=60, help="steps a side for the 4096x4096 Adam")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    only = args.only.split(",")
    count = 3 if args.quick else args.pairs
    cases = [("cnn", "digits CNN, Adam, batches of 32", cnn_case, args.cnn_steps),
             ("adam", "4096x4096, Adam", adam_case, args.adam_steps)]
    for key, label, case, n in cases:
        if key not in only:
            continue
        n = max(5, n // 10) if args.quick else n
        for listener in (False, True):
            print(f"{label}, {'listener attached' if listener else 'no app'} ({n} steps a side, "
                  f"{count} pairs, {args.threads} thread):", flush=True)
            r, c = pairs(case, n, count, listener)
            print(f"  watched / bare: {ratio_summary(r)}  (target {'0.97' if listener else '0.99'})", flush=True)
            print(f"  CPU-time ratio: {ratio_summary(c)}", flush=True)
    if "open" in only:
        open_times(3 if args.quick else 5)


if __name__ == "__main__":
    main()
