"""Headless command line: replay a session, load/save state_dicts, print the state.

    optimlab run SESSION [--steps N] [--load-optimizer PATH] [--save-optimizer PATH]
                 [--save-params PATH] [--save-session PATH] [--print-state]
    optimlab optimizers      list torch.optim's optimizers and their hyperparameters
    optimlab examples        list the shipped examples (usable as SESSION by name)

Bad input exits with status 2 and one line on stderr.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import catalogue, files, session_file
from .runner import Budget, run_steps
from .session import NonFinite, StepError
from .spec import LoadOptimizer, LoadParams, SpecError

EXAMPLES = Path(__file__).resolve().parents[1] / "resources" / "examples"
RULE = "-" * 60


def example_paths() -> dict[str, Path]:
    return {p.stem: p for p in sorted(EXAMPLES.glob("*.json"))}


def resolve(name: str) -> Path | str:
    if not name:
        return name  # Path("") is ".": let the loader say that no name was given
    p = Path(name)
    if p.exists() or name not in example_paths():
        return p
    return example_paths()[name]


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
    s = session_file.load_session(resolve(args.session))
    # loads go through the journal, so a saved session (.json too) replays them
    if args.load_optimizer is not None:
        s.apply(LoadOptimizer(path=str(Path(args.load_optimizer).resolve())))
    if args.load_params is not None:
        s.apply(LoadParams(path=str(Path(args.load_params).resolve())))
    if args.steps:
        run_steps(s, args.steps, Budget())
    if args.save_optimizer is not None:
        files.save_optimizer(s, args.save_optimizer)
    if args.save_params is not None:
        files.save_params(s, args.save_params)
    if args.save_checkpoint is not None:
        files.save_checkpoint(s, args.save_checkpoint)
    if args.save_session is not None:
        session_file.save_session(s, args.save_session)
    if args.print_state:
        print_state(s)
    else:
        loss = s.loss_value()
        print(f"{s.spec.optimizer}: step {s.step_count}" + ("" if loss is None else f", loss {loss:.6g}"))
    return 0


def cmd_optimizers(args) -> int:
    for info in catalogue.catalogue():
        print(f"{info.name}: {info.summary}")
        for h in info.hparams:
            if not h.advanced:
                print(f"    {h.name} = {h.format(h.default)}  ({h.kind})")
        for c in info.constraints:
            print(f"    note: {c}")
    return 0


def cmd_examples(args) -> int:
    from .spec import loads
    for name, p in example_paths().items():
        spec, _ = loads(p.read_text())
        print(f"{name}: {spec.name or spec.description}")
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr and status 2, like every other bad input."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="optimlab", description="Watch PyTorch optimizers work (headless commands).")
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
    r.set_defaults(func=cmd_run)
    sub.add_parser("optimizers", help="list torch.optim's optimizers").set_defaults(func=cmd_optimizers)
    sub.add_parser("examples", help="list the shipped examples").set_defaults(func=cmd_examples)
    return ap


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # usage error (one line, status 2) or --help (0): return, don't exit
        return e.code if isinstance(e.code, int) else 2
    if getattr(args, "steps", 0) < 0:
        print("optimlab: --steps must be 0 or more", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader (e.g. `| head`) closed the pipe: not an error of ours
        sys.stderr = open(os.devnull, "w")
        return 0
    except (SpecError, files.LoadError, StepError, NonFinite, OSError) as e:
        print(f"optimlab: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
