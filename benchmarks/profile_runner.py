"""Where the runner's time goes per step, in the runner process as the app runs it.

Run: python benchmarks/profile_runner.py [--only a,b,e] [--seconds 10]
Needs py-spy (``pip install py-spy``; found on PATH or at $PYSPY). For each case of
harness.py it starts a runner process, builds the case there, runs it with live snapshots
(read by this process every 25 ms, as the window reads them), and samples the child's
runner thread twice with ``py-spy record --idle`` (idle too: a thread waiting is a step
not taken):

1. Python stacks, ``--nonblocking`` (the child is never paused, so the time budgets of
   snapshots and probes see the real run): each sample goes to the first category below
   whose frame is on its stack, so the shares add up to 100% of the runner thread's wall
   time; microseconds per step = share / steps per second of that same run.
2. ``--native`` at a low rate (it pauses the child to unwind, which slows it): within each
   category, the share of samples whose leaf is native code (torch's kernels and dispatch,
   libc) rather than the interpreter; and the time spent waiting for the interpreter lock.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from core import edits  # noqa: E402
from core.runner_process import ProcessRunner  # noqa: E402
from harness import POLL, SNAPSHOT_HZ, case, warm_step  # noqa: E402

SESSION = "core/session.py"
GIL = "waiting for the interpreter lock"


def _line(pattern: str) -> int | None:
    """The line of core/session.py that holds ``pattern`` (so the categories follow edits)."""
    text = (Path(__file__).resolve().parents[1] / SESSION).read_text().splitlines()
    return next((i + 1 for i, line in enumerate(text) if pattern in line), None)


def categories() -> list[tuple[str, re.Pattern]]:
    """(label, frame pattern), most specific first. Names from before the engine rewrite
    (Session steps itself, probes) and after it (Engine steps, the Observer watches)."""
    loss_check = _line("math.isfinite(float(self.loss))")
    before = _line("before = [p.detach().clone()")
    cats = [
        (GIL, r"^take_gil "),
        ("loss check float(self.loss) (every step)",
         rf"^Session\.step_once \({SESSION}:{loss_check}\)" if loss_check else None),
        ("probe: copy before step, norms, NaN check",
         r"^Session\._probe |^(Session|Engine)\.check_can_step "
         + (rf"|^Session\.step_once \({SESSION}:{before}\)" if before else "")),
        ("observer: series, breakpoints, readback", r"^Observer\.|^Session\.flush "),
        ("checkpoints", r"^Session\.checkpoint "),
        ("history row (record: loss, lrs, xy)", r"^Session\.record "),
        ("snapshot: make_snapshot", r"^make_snapshot "),
        ("snapshot: pickle, hand to sender", r"^_Sender\.offer "),
        ("snapshot: other (_publish)", r"^Runner\._publish "),
        ("zero_grad", r"^Optimizer\.zero_grad "),
        ("optimizer.step", r"^Optimizer\.profile_hook_step|^\w+\.step \(torch/optim/"),
        ("backward", r"^Tensor\.backward |^backward \(torch/autograd"),
        ("batch (next_batch)", r"^Task\.next_batch "),
        ("loss forward", r"^Task\.loss |^\w+ \(core/objectives\.py"),
        ("evaluation, scheduler (_after_step)", r"^(Session|Engine)\._after_step "),
        ("step_once: the rest", r"^(Session|Engine)\.step_once "),
        ("Session.advance: the rest", r"^Session\.advance "),
        ("runner loop: budgets, counters, commands", r"^Runner\.(_one_step|_loop|_drain|_count_step) "),
    ]
    return [(label, re.compile(p)) for label, p in cats if p]


def _native(frame: str) -> bool:
    return bool(re.search(r"\((lib[^()]*\.so[^()]*|\[vdso\])\)$", frame)) and "libpython" not in frame


def classify(raw: Path, thread: str = "optimlab-runner") -> tuple[int, dict]:
    """(samples of ``thread``, {category: [samples, native samples]}) from py-spy's raw output."""
    cats = categories()
    out: dict = collections.defaultdict(lambda: [0, 0])
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or thread not in frames[0]:
            continue
        n = int(count)
        total += n
        label = next((lbl for lbl, pat in cats if any(pat.search(f) for f in frames)), "other (thread start, idle)")
        out[label][0] += n
        out[label][1] += n if _native(frames[-1]) else 0
    return total, out


def child_pid(session) -> int:
    return os.getpid()


def profile_case(key: str, seconds: float, pyspy: str, folder: Path, native: bool) -> tuple[int, dict, float]:
    """(samples, categories, steps/s while sampled) of one py-spy run on case ``key``."""
    c = case(key)
    r = ProcessRunner(None, max_hz=SNAPSHOT_HZ)
    try:
        r.replace(edits.build, c.spec).result(120)
        r.call(warm_step).result(60)
        pid = r.call(child_pid).result(60)
        raw = folder / f"{key}{'-native' if native else ''}.txt"
        r.run()
        time.sleep(0.5)  # into the steady run
        step0, t0 = r.latest().step, time.perf_counter()
        stop = threading.Event()

        def read():  # as the window reads
            while not stop.wait(POLL):
                r.latest()
        reader = threading.Thread(target=read)
        reader.start()
        how = ["--native", "-r", "25"] if native else ["--nonblocking", "-r", "250"]
        subprocess.run([pyspy, "record", "--pid", str(pid), "--threads", "--idle", *how,
                        "-d", str(int(seconds)), "-f", "raw", "-o", str(raw)], check=True, capture_output=True)
        steps_per_s = (r.latest().step - step0) / (time.perf_counter() - t0)
        stop.set()
        reader.join()
        r.pause()
    finally:
        r.stop()
    total, cats = classify(raw)
    return total, cats, steps_per_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="a,b,e", help="case keys, comma-separated (default a,b,e)")
    ap.add_argument("--seconds", type=float, default=10.0, help="per py-spy run (two a case)")
    ap.add_argument("--keep", help="folder to keep py-spy's raw stacks in")
    args = ap.parse_args()
    pyspy = os.environ.get("PYSPY") or shutil.which("py-spy")
    if not pyspy:
        sys.exit("py-spy is needed: pip install py-spy (or set PYSPY to its path)")
    folder = Path(args.keep or tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    for key in (k.strip() for k in args.only.split(",")):
        total, cats, sps = profile_case(key, args.seconds, pyspy, folder, native=False)
        ntotal, ncats, _ = profile_case(key, args.seconds, pyspy, folder, native=True)
        gil = ncats.get(GIL, [0])[0] / max(1, ntotal)
        print(f"\n{case(key).label}: {sps:.0f} steps/s while sampled, {total} samples of the runner thread; "
              f"{100 * gil:.1f}% of it waiting for the interpreter lock (native run, {ntotal} samples)")
        print(f"  {'category':44s} {'% of time':>9s} {'us/step':>8s} {'native':>7s}")
        for label, (n, _) in sorted(cats.items(), key=lambda kv: -kv[1][0]):
            share = n / total
            nn, nnat = ncats.get(label, [0, 0])
            native = f"{100 * nnat / nn:6.0f}%" if nn else "      -"
            print(f"  {label:44s} {100 * share:8.1f}% {1e6 * share / sps:8.1f} {native}")
    print(f"\nraw stacks in {folder}")


if __name__ == "__main__":
    main()
