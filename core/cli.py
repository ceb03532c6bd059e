"""Headless command line: replay a session, load/save state_dicts, print the state.

    optimlab run SESSION [--steps N] [--load-optimizer PATH] [--save-optimizer PATH]
                 [--save-params PATH] [--save-session PATH] [--print-state]
                 [--trust-script] [--timeout SECONDS] [--branch B] [--at STEP] [--until CONDITION ...]
                 [--threads N] [--measure-every-step]
    optimlab branches SESSION   list the timeline's branches
    optimlab explain SESSION --tensor NAME --index I[,J...] [--step K] [--branch B]
                             one element's update: the optimizer's formula with its numbers, beside torch's
    optimlab export SESSION [-o script.py] [--branch B]   the branch as a plain PyTorch script
    optimlab optimizers      list the optimizers (torch.optim's, the installed collections') and their
                             hyperparameters, and the classes skipped with the reason
    optimlab examples        list the shipped examples (usable as SESSION by name)
    optimlab listen [ADDRESS] [--frames N] [--json]   frames of a script that calls optimlab.watch
    optimlab inspect PATH [--json] [--no-norms]       a checkpoint's optimizer state per parameter name
    optimlab resume CHECKPOINT --task SPEC_OR_SCRIPT [--step N] [--steps K] [-o SESSION]
                    [--optimizer NAME] [--optimizer-state I] [--batch-size B] [--seed S]
                    [--trust-script] [--print-state]
                             a session at the checkpoint's step that goes on as the run that wrote it

Bad input exits with status 2 and one line on stderr. ``run`` works in a supervised child
process (``core.headless``): Ctrl+C exits 130 and --timeout 124 after saving what was asked
at the step reached; a child that dies exits 1, naming its signal and what was saved.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

from . import catalogue, files, optimizer_names, trust
from .breakpoints import BreakpointError
from .channel import ChannelError
from .breakpoints import parse as parse_breakpoint
from .headless import RunRequest, supervise
from .session import NonFinite, StepError
from .spec import SpecError

EXAMPLES = Path(__file__).resolve().parents[1] / "resources" / "examples"
RULE = "-" * 60


def example_paths() -> dict[str, Path]:
    return {p.stem: p for p in sorted(EXAMPLES.glob("*.json"))}


def resolve(name: str) -> Path | str:
    """The file ``name`` names, or the shipped example of that name. A bare word that is
    neither (no folder, no suffix: meant as an example) is refused naming the examples."""
    if not name:
        return name  # Path("") is ".": let the loader say that no name was given
    p = Path(name)
    examples = example_paths()
    if p.exists() or name not in examples:
        if not p.exists() and not p.suffix and len(p.parts) == 1:
            raise files.LoadError(f"No such file or example: {name} (the examples: {', '.join(examples)})")
        return p
    return examples[name]


def print_state_text(session) -> str:
    """The optimizer as the seed's walkthrough prints it (torch's own reprs)."""
    buf = io.StringIO()
    print_state(session, buf)
    return buf.getvalue()


def print_state(session, out=None) -> None:
    """Print the optimizer the way the seed's walkthrough does (torch's own reprs)."""
    out = out if out is not None else sys.stdout  # looked up now: callers may redirect sys.stdout
    opt = session.optimizer
    print(f"step {session.step_count}", file=out)
    for name, p in session.params.items():
        print(f"{name}:\n{p.detach()}", file=out)
        print(f"{name}.grad:\n{p.grad}", file=out)
    print(RULE, file=out)
    print(f"optimizer.state_dict():\n {opt.state_dict()}", file=out)
    print(RULE, file=out)
    print(f"optimizer.defaults:\n{opt.defaults}", file=out)
    print(RULE, file=out)
    print(f"optimizer.state:\n{opt.state}", file=out)
    print(RULE, file=out)
    print(f"optimizer.param_groups:\n{opt.param_groups}", file=out)


def _abs(path: str | None) -> str:
    """An absolute path (the run happens in a child whose working folder may differ); empty stays
    empty and a trailing slash stays, so the save checks still see them."""
    if not path or os.path.isabs(path):
        return path or ""
    return os.path.join(os.getcwd(), path)


def check_paths(args) -> None:
    """Refuse a bad session path and bad --load-*/--save-* paths (one sentence each) before
    any replay or step."""
    files.readable(resolve(args.session))
    for option in ("load_optimizer", "load_params", "save_optimizer", "save_params", "save_checkpoint",
                   "save_session"):
        value = getattr(args, option)
        if value == "":
            error = files.LoadError if option.startswith("load") else files.SaveError
            raise error(f"--{option.replace('_', '-')} needs a file name; an empty one was given")
        if value is not None and option.startswith("load"):
            files.readable(value)
        elif value is not None:
            files.save_target(value)


def cmd_run(args) -> int:
    check_paths(args)
    saves = tuple((what, _abs(getattr(args, f"save_{what}"))) for what in ("optimizer", "params", "checkpoint", "session")
                  if getattr(args, f"save_{what}") is not None)
    req = RunRequest(session=str(Path(resolve(args.session)).absolute()), steps=args.steps,
                     load_optimizer=_abs(args.load_optimizer), load_params=_abs(args.load_params), saves=saves,
                     print_state=args.print_state, trust_script=args.trust_script,
                     trusted=tuple(trust.trusted()), branch=args.branch, at=args.at, until=tuple(args.until),
                     threads=args.threads or 0, measure_all=args.measure_every_step)
    for c in req.until:
        parse_breakpoint(c)  # a condition that cannot be read is refused before anything runs
    outcome = supervise(req, args.timeout)
    if outcome.out:
        sys.stdout.write(outcome.out)
        sys.stdout.flush()
    if outcome.err:
        print(outcome.err, file=sys.stderr)
    return outcome.code


def cmd_branches(args) -> int:
    """The timeline's branches: id, parent and fork step, steps, last loss, why it began."""
    from . import session_file
    s = session_file.load_session(resolve(args.session))
    print(f"{'branch':>6} {'parent':>6} {'fork':>8} {'steps':>8} {'last loss':>12}  optimizer  began")
    for b in s.branches():
        loss = "" if b.last_loss is None else f"{b.last_loss:.6g}"
        parent = "" if b.parent is None else str(b.parent)
        ident = ("*" if b.current else "") + str(b.id)  # * marks the branch the session stands on
        print(f"{ident:>6} {parent:>6} {b.fork_step:>8} {b.steps:>8} {loss:>12}  {b.optimizer:<9}  "
              f"{b.reason or 'the session'}")
    return 0


def cmd_explain(args) -> int:
    from .explain import command  # here: the commands above need none of it
    return command(args)


def cmd_export(args) -> int:
    from .export import command
    return command(args)


def cmd_optimizers(args) -> int:
    """torch.optim's optimizers, then each installed collection's (``[extras]``): a form's
    fields and notes for those a session can use, one line with the reason for those skipped."""
    from . import extra_optimizers
    print("== torch.optim ==")
    for info in catalogue.catalogue():
        _print_info(info)
    found = extra_optimizers.listing()
    for module in extra_optimizers.installed():
        mine = [f for f in found if f.collection == module]
        print(f"\n== {module} ({sum(f.reason is None for f in mine)} usable, "
              f"{sum(f.reason is not None for f in mine)} skipped) ==")
        skipped = []
        for f in mine:
            try:
                info = None if f.reason else catalogue.info(f.name)
            except Exception as e:  # noqa: BLE001 - a class that cannot be described is listed as skipped
                f = extra_optimizers.Found(f.name, f.collection, _one_line(e))
            if f.reason:
                skipped.append(f)
            else:
                _print_info(info)
        for f in skipped:
            print(f"skipped: {f.name}: {f.reason}")
    missing = [m for m in optimizer_names.COLLECTIONS if m not in extra_optimizers.installed()]
    if missing:
        print(f"\nnot installed: {', '.join(missing)} (pip install 'optimlab[extras]')")
    return 0


def _print_info(info) -> None:
    print(f"{info.name}: {info.summary}")
    for h in info.hparams:
        if not h.advanced:
            print(f"    {h.name} = {h.format(h.default)}  ({h.kind})")
    for c in info.constraints:
        print(f"    note: {c}")


def cmd_examples(args) -> int:
    from .spec import loads
    for name, p in example_paths().items():
        spec, _ = loads(p.read_text())
        print(f"{name}: {spec.name or spec.description}")
    return 0


def cmd_listen(args) -> int:
    from .listen import listen
    try:
        return listen(args.address, frames=args.frames, as_json=args.json, timeout=args.timeout)
    except KeyboardInterrupt:
        return 130


def cmd_inspect(args) -> int:
    from .inspect_report import inspect
    return inspect(args.path, as_json=args.json, norms=not args.no_norms)


def cmd_resume(args) -> int:
    """A session at the checkpoint's step (``core.resume``), stepped on and saved as asked."""
    from . import resume, session_file
    from .session import Session
    from .tasks import TaskError
    from .trust import UntrustedScript
    if args.output is not None:
        files.save_target(args.output)  # a bad target is refused before any work
    if not Path(args.checkpoint).is_dir():
        files.readable(args.checkpoint)
    trust.trust_all(args.trust_script)
    fields = {k: v for k, v in (("batch_size", args.batch_size), ("seed", args.seed)) if v is not None}
    try:
        base = resume.task_spec_for(str(resolve(args.task)), args.checkpoint, args.optimizer,
                                    args.optimizer_state, **fields)
        r = resume.resume_spec(base, args.checkpoint, step=args.step, optimizer=args.optimizer_state)
        s = Session(r.spec, blobs=r.blobs)
    except UntrustedScript as e:
        raise SpecError(f"{e}: pass --trust-script to run it") from None
    except TaskError as e:
        raise SpecError(str(e)) from None
    for note in r.notes:
        print(note, flush=True)
    stop = []
    if args.steps:
        import signal
        old = signal.signal(signal.SIGINT, lambda *_: stop.append(1))  # Ctrl+C: stop between two steps
        try:
            s.run(args.steps, cancelled=lambda: bool(stop))
        finally:
            signal.signal(signal.SIGINT, old)
    loss = s.loss_value()
    print(f"at step {s.step_count:,}" + ("" if loss is None else f", loss {loss:.6g}"))
    if args.print_state:
        print_state(s)
    if args.output is not None:
        session_file.save_session(s, args.output)
        print(f"saved {args.output}")
    if stop:
        print(f"optimlab: interrupted at step {s.step_count:,}" + ("; saved " + args.output if args.output else ""),
              file=sys.stderr)
        return 130
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr and status 2, like every other bad input."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="optimlab", description="Watch PyTorch optimizers work (headless commands).",
                 epilog="Without a command, optimlab [FILE or EXAMPLE] opens the window "
                        "(its options: optimlab gui --help).")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="replay a session's journal, then load, step and save as asked")
    r.add_argument("session", help="a .json spec, a .optimlab session, or an example's name")
    r.add_argument("--steps", type=int, default=0, help="steps to run after the journal")
    r.add_argument("--load-optimizer", metavar="PATH", help="optimizer state_dict to load before stepping")
    r.add_argument("--load-params", metavar="PATH", help="parameters to load before stepping")
    r.add_argument("--save-optimizer", metavar="PATH", help="write the optimizer state_dict (torch.save)")
    r.add_argument("--save-params", metavar="PATH", help="write the parameters {name: tensor} (torch.save)")
    r.add_argument("--save-checkpoint", metavar="PATH", help="write both, as model_state_dict/optimizer_state_dict")
    r.add_argument("--save-session", metavar="PATH", help="write the whole session (.optimlab, or .json for spec+journal)")
    r.add_argument("--print-state", action="store_true", help="print defaults, state and param_groups as the seed does")
    r.add_argument("--trust-script", action="store_true",
                   help="run the Python task script the session names (without it, a session that names a "
                        "script other than a shipped example is refused and nothing runs)")
    r.add_argument("--timeout", type=float, default=0.0, metavar="SECONDS",
                   help="stop stepping after SECONDS, save what was asked and exit 124")
    r.add_argument("--threads", type=int, metavar="N",
                   help="torch threads to step with (default: the app's rule, every core but one for problems "
                        "up to a million numbers, every core above; OPTIMLAB_THREADS overrides it); on the CPU "
                        "sums over more than 32,768 numbers differ in their last bits between thread counts")
    r.add_argument("--branch", type=int, metavar="B", help="stand on branch B (its head, or --at) first")
    r.add_argument("--at", type=int, metavar="STEP", help="stand at STEP of the branch first (rewinding)")
    r.add_argument("--until", action="append", default=[], metavar="CONDITION",
                   help="stop at the first step where CONDITION holds, e.g. 'grad_norm > 10', 'loss nonfinite', "
                        "'step == 120', 'update_ratio[1] > 0.01', 'loss rising 5', 'w.grad abs > 100' "
                        "(repeatable); prints 'stopped at step K: CONDITION' and saves what is asked there")
    r.add_argument("--measure-every-step", action="store_true",
                   help="after stepping, replay the steps the run measured no norms or histograms at (it measures "
                        "within a small share of its time) and measure them, so a saved session has every step's "
                        "distributions and norms; prints 'Measured steps A-B by replaying them (...)'")
    r.set_defaults(func=cmd_run)
    b = sub.add_parser("branches", help="list a session's branches (id, parent, fork step, steps, last loss)")
    b.add_argument("session", help="a .optimlab session (or .json, or an example's name)")
    b.set_defaults(func=cmd_branches)
    e = sub.add_parser("explain", help="one element's update at a step: the optimizer's formula with its "
                       "numbers, recomputed in float64 and in the tensor's dtype, beside the change torch made")
    e.add_argument("session", help="a .optimlab session, a .json spec, or an example's name")
    e.add_argument("--tensor", required=True, metavar="NAME", help="the tensor (a parameter's name)")
    e.add_argument("--index", default="", metavar="I[,J...]", help="the element, e.g. 0,1 (none for a scalar)")
    e.add_argument("--step", type=int, metavar="K", help="the update from step K-1 to K (default: the session's step)")
    e.add_argument("--branch", type=int, metavar="B", help="a branch of the timeline (default: the current one)")
    e.add_argument("--trust-script", action="store_true", help="run the Python task script the session names")
    e.set_defaults(func=cmd_explain)
    x = sub.add_parser("export", help="write the branch as a plain PyTorch script that reproduces it and "
                       "checks its own result")
    x.add_argument("session", help="a .optimlab session, a .json spec, an example's name, or a saved "
                   "comparison (with --run)")
    x.add_argument("-o", "--output", metavar="PATH", help="the script to write (default: print it)")
    x.add_argument("--branch", type=int, metavar="B", help="a branch of the timeline (default: the current one)")
    x.add_argument("--run", type=int, metavar="N", help="with a saved comparison (.optimlab-compare): its "
                   "configuration N, as listed, from 0")
    x.add_argument("--trust-script", action="store_true", help="run the Python task script the session names")
    x.set_defaults(func=cmd_export)
    from .compare_cli import add_parser as add_compare
    add_compare(sub)
    sub.add_parser("optimizers", help="list the optimizers (torch.optim's and the installed collections')"
                   ).set_defaults(func=cmd_optimizers)
    sub.add_parser("examples", help="list the shipped examples").set_defaults(func=cmd_examples)
    li = sub.add_parser("listen", help="print the frames of a running script that calls optimlab.watch(...)")
    li.add_argument("address", nargs="?", help="its name or socket path (default: the newest running)")
    li.add_argument("--frames", type=int, default=0, metavar="N", help="stop after N frames (default: never)")
    li.add_argument("--json", action="store_true", help="one JSON object per line")
    li.add_argument("--timeout", type=float, default=0.0, metavar="SECONDS", help="give up after SECONDS (exit 124)")
    li.set_defaults(func=cmd_listen)
    ins = sub.add_parser("inspect", help="a checkpoint's optimizer state per parameter name (torch.save, "
                                         "Lightning, Hugging Face Trainer folder, torch.distributed.checkpoint)")
    ins.add_argument("path", help="a checkpoint file or folder")
    ins.add_argument("--json", action="store_true", help="print JSON")
    ins.add_argument("--no-norms", action="store_true", help="shapes and dtypes only (reads no tensor data)")
    ins.set_defaults(func=cmd_inspect)
    rs = sub.add_parser("resume", help="a task session at a checkpoint's step that goes on bit for bit as the "
                                       "run that wrote it (if that run followed the task's documented rules)")
    rs.add_argument("checkpoint", help="a checkpoint file or folder (torch.save, Lightning, Hugging Face, DCP)")
    rs.add_argument("--task", required=True, metavar="SPEC_OR_SCRIPT",
                    help="the task whose model the checkpoint holds: a session spec (.json, or an example's "
                         "name) or a task script (.py)")
    rs.add_argument("--step", type=int, metavar="N", help="the step the checkpoint was saved at (default: "
                    "its global_step/step/iteration, else the optimizer state's step)")
    rs.add_argument("--steps", type=int, default=0, metavar="K", help="steps to run on from there")
    rs.add_argument("-o", "--output", metavar="PATH", help="save the session (.optimlab, or .json)")
    rs.add_argument("--optimizer", metavar="NAME", help="the optimizer class (default: the spec's; for a "
                    "script, read from the checkpoint's optimizer state)")
    rs.add_argument("--optimizer-state", type=int, metavar="I", help="which optimizer state, when the "
                    "checkpoint holds several (numbered from 0 as inspect lists them)")
    rs.add_argument("--batch-size", type=int, metavar="B", help="the task's batch size as the run used it")
    rs.add_argument("--seed", type=int, metavar="S", help="the task's seed as the run used it")
    rs.add_argument("--trust-script", action="store_true", help="run the Python task script")
    rs.add_argument("--print-state", action="store_true", help="print the optimizer as run --print-state does")
    rs.set_defaults(func=cmd_resume)
    return ap


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # usage error (one line, status 2) or --help (0): return, don't exit
        return e.code if isinstance(e.code, int) else 2
    if (getattr(args, "at", None) or 0) < 0:
        print("optimlab: --at must be a step number, 0 or more", file=sys.stderr)
        return 2
    if getattr(args, "threads", None) is not None and args.threads < 1:
        print("optimlab: --threads must be 1 or more", file=sys.stderr)
        return 2
    if getattr(args, "steps", 0) < 0:
        print("optimlab: --steps must be 0 or more", file=sys.stderr)
        return 2
    if (getattr(args, "step", None) or 0) < 0:
        print("optimlab: --step must be a step number, 0 or more", file=sys.stderr)
        return 2
    if not getattr(args, "timeout", 0.0) >= 0:
        print("optimlab: --timeout must be 0 (none) or more seconds", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader (e.g. `| head`) closed the pipe: not an error of ours
        sys.stderr = open(os.devnull, "w")
        return 0
    except (SpecError, files.LoadError, StepError, NonFinite, BreakpointError, OSError, ChannelError) as e:
        print(f"optimlab: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
