"""``optimlab compare``: make or open a comparison, step it in lockstep, save it, print a table.

    optimlab compare FILE.optimlab-compare --steps 500 [--measure-every-step]
    optimlab compare SESSION --config "Adam lr=0.01" --config "SGD momentum=0.9 | StepLR step_size=100" \\
        --steps 500 -o out.optimlab-compare

A session (a .json spec, a .optimlab file or an example's name) gives the problem and the first
configuration (its current branch, edits included); each ``--config`` adds one more. The
comparison is saved to ``-o`` (or back to FILE when it was one); the table has every run's
``--columns`` (default: loss and validation accuracy; see ``core.compare_table``) at ``--at``
steps and the last step. A resumed session's comparison starts at its checkpoint's step N
(``core.compare.config_run``: a ``--config`` of the checkpoint's optimizer class takes its state,
another class starts fresh at N) and the table's steps count from N.
"""
from __future__ import annotations

import math
from pathlib import Path

from . import compare, compare_file, schedulers
from .compare import Comparison, RunSpec
from .compare_config import _top_level_split, config_run, hparams_from_text
from .compare_table import COLUMNS, DEFAULT_COLUMNS, available, cell_at, parse_columns
from .spec import SchedulerSpec, SpecError

SHORT = {"loss": "loss", "val_loss": "vloss", "val_accuracy": "acc", "grad_norm": "gnorm", "update_norm": "unorm",
         "lr": "lr", "distance": "dist"}  # column heads that fit 12 characters


def parse_config(base, text: str, blobs: dict | None = None) -> RunSpec:
    """``"Adam lr=0.01, betas=(0.9, 0.99)"``: an optimizer name, then its arguments; after a
    ``|``, an lr scheduler and its own (``"SGD lr=0.1 | StepLR step_size=3, every=step"``).
    ``blobs``: the session's stored data (a resumed checkpoint's, see ``config_run``)."""
    text, bar, sched = text.partition("|")
    name, _, args = text.strip().partition(" ")
    if not name:
        raise SpecError("--config needs an optimizer name, e.g. --config \"Adam lr=0.01\"")
    scheduler = parse_scheduler(sched) if bar else None
    return config_run(base, name, hparams_from_text(name, args), scheduler, blobs)


def parse_scheduler(text: str) -> SchedulerSpec:
    """``"StepLR step_size=3, gamma=0.5, every=step"``: a scheduler of torch.optim.lr_scheduler,
    its arguments (required ones it is not given take the form's starting value) and when it steps."""
    name, _, args = text.strip().partition(" ")
    offered = [i.name for i in schedulers.catalogue()]
    if name not in offered:
        raise SpecError(f"--config: {name or 'nothing'!r} after '|' is not a scheduler; one of {', '.join(offered)}")
    every = schedulers.default_every(name)
    words = []
    for word in _top_level_split(args.replace(";", ",")):  # milestones=[30, 80] stays one word
        key, _, value = (x.strip() for x in word.partition("="))
        if key == "every":
            every = value
        else:
            words.append(word)
    params = schedulers.with_required(name, hparams_from_text(name, ",".join(words), schedulers.info(name)))
    spec = SchedulerSpec(name, params, every)
    spec.check()
    return spec


def parse_steps(text: str) -> list[int]:
    """``--at``'s steps: whole numbers separated by commas or spaces (one sentence if not)."""
    words = text.replace(",", " ").split()
    bad = [w for w in words if not w.isdigit()]
    if bad:
        raise SpecError(f"--at takes step numbers separated by commas, e.g. --at 100,250; {bad[0]!r} is not one")
    return [int(w) for w in words]


def table(c: Comparison, at: list[int], columns=DEFAULT_COLUMNS) -> str:
    """Every run's ``columns`` at the steps ``at`` (those reached) and the last step."""
    start = c.spec.start_step  # the runs' first step is the one after (a resumed checkpoint's step)
    steps = sorted({k for k in at if start < k <= c.step_count} | {c.step_count})
    hist, ids = c.history(), [r.id for r in c.runs]
    cols = [(m, k) for m in available(hist, columns) for k in steps]
    width = max(len(r.label) for r in c.runs)
    lines = [f"{'configuration':<{width}}  " + "  ".join(f"{SHORT[m] + '@' + str(k):>12}" for m, k in cols)]
    earlier = False
    for i, r in enumerate(c.runs):
        cells = [cell_at(hist, ids, i, m, k) if k <= r.step_count else None for m, k in cols]
        texts = []
        for got, (_, k) in zip(cells, cols):
            if got is None or not math.isfinite(got[0]):
                texts.append(f"{'-':>12}")
                continue
            mark = "*" if got[1] < k else ""  # measured before the step asked (see the note below)
            earlier = earlier or bool(mark)
            texts.append(f"{f'{got[0]:.6g}{mark}':>12}")
        note = f"  (stopped at step {r.step_count:,}: {r.halted})" if r.halted else ""
        lines.append(f"{r.label:<{width}}  {'  '.join(texts)}{note}")
    if earlier:
        lines.append("* the last value measured before that step (norms are measured within a time budget, "
                     "validation every few steps)")
    return "\n".join(lines)


def cmd_compare(args) -> int:
    from . import session_file
    from .cli import resolve
    if args.steps < 0:
        raise SpecError("--steps must be 0 or more")
    at = parse_steps(args.table_at or "")
    try:
        columns = parse_columns(args.columns) if args.columns else list(DEFAULT_COLUMNS)
    except ValueError as e:
        raise SpecError(str(e)) from None
    source = str(args.file)
    if source.endswith(compare_file.EXT):
        if args.config:
            raise SpecError("--config adds configurations to a session; use the window to add them to a saved comparison")
        c = compare_file.load(source)
        out = args.output or source
    else:
        s = session_file.load_session(resolve(source))
        runs = [RunSpec.from_branch(s, s.timeline.current)] + [parse_config(s.spec, t, s.timeline.blobs) for t in args.config]
        c = Comparison(runs)
        out = args.output
    if args.output is not None:
        compare_file.files.save_target(args.output)  # a bad target is refused before stepping
    from .runner_process import _set_threads
    c.processes = compare.PROCESSES != "0"  # the runs side by side, as the app steps them
    _set_threads(c)  # the app's rule (one thread a run for a small problem in processes)
    try:
        c.run(args.steps)
        measured = ""
        if args.measure_every_step:
            from .remeasure import measure_comparison
            measured = measure_comparison(c).message
        if out:
            compare_file.save(c, out)
        text = table(c, at, columns)
    finally:
        c.close()
    if measured:
        print(measured)
    print(text)
    if c.last_hit is not None:
        print(c.last_hit.message)
    if out:
        print(f"saved {Path(out).name} at step {c.step_count:,}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="step 2-6 configurations of one problem in lockstep and print a table")
    p.add_argument("file", help="a .optimlab-compare file, or a session (.json, .optimlab, an example's name)")
    p.add_argument("--config", action="append", default=[], metavar="'OPTIMIZER ARGS'",
                   help="one more configuration, e.g. 'Adam lr=0.01' or 'SGD lr=0.1 | StepLR step_size=3, "
                   "every=step' (repeatable; with a session)")
    p.add_argument("--steps", type=int, default=0, help="lockstep steps to run")
    p.add_argument("--at", dest="table_at", metavar="K,K,...", help="steps of the table (the last step is always shown)")
    p.add_argument("--columns", metavar="NAME,...", help=f"the table's quantities, of {', '.join(COLUMNS)} "
                   "(default: loss, val_accuracy)")
    p.add_argument("-o", "--output", metavar="PATH", help="save the comparison here (.optimlab-compare)")
    p.add_argument("--measure-every-step", action="store_true",
                   help="after stepping, replay what the runs measured no norms, histograms or distance/cosine at "
                        "and measure it (the table's values are then those of the steps asked, none marked *)")
    p.set_defaults(func=cmd_compare)
