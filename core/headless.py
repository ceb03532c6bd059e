"""``optimlab run`` in a supervised child process.

The session (and any task script it runs) lives in a child forked from the runner
fork server; this process only supervises. So a script that calls ``os._exit``, a
crash in native code or the out-of-memory killer ends the child, not the command,
and the command still says in one line what happened and what was saved:

- Ctrl+C: the child stops at the next step, saves what was asked, and the command
  exits 130; a second Ctrl+C kills the child at once (nothing more is saved);
- ``--timeout SECONDS``: the same at the deadline (exit 124); a step that does not end
  within ``GRACE`` seconds of it (a script that sleeps) is killed;
- the child dies: its exit status or signal, the step it had reached and the files
  saved so far (exit 1).
"""
from __future__ import annotations

import signal
import time
import traceback
from multiprocessing.connection import wait
from dataclasses import dataclass, field

GRACE = 3.0  # seconds a step may take to end after a stop was asked, before the child is killed
EXIT_INTERRUPTED, EXIT_TIMEOUT, EXIT_DIED = 130, 124, 1


@dataclass(frozen=True)
class RunRequest:
    """What ``optimlab run`` was asked to do, in the order it does it."""

    session: str
    steps: int = 0
    load_optimizer: str = ""
    load_params: str = ""
    saves: tuple[tuple[str, str], ...] = ()  # (what, path): optimizer, params, checkpoint, session
    print_state: bool = False
    trust_script: bool = False
    trusted: tuple[tuple[str, str], ...] = ()  # (path, sha256) agreed to in this process
    threads: int = 0  # torch threads in the child (0: the app's rule, runner_process.threads_for)
    branch: int | None = None  # stand on this branch (its head, or --at) before anything else
    at: int | None = None  # stand at this step first
    until: tuple[str, ...] = ()  # breakpoint conditions: stop at the first step where one holds
    measure_all: bool = False  # then replay the steps left unmeasured (core.remeasure) before saving


@dataclass
class RunOutcome:
    """What the supervisor learned: exit code, the line(s) to print, and what was saved."""

    code: int
    out: str = ""
    err: str = ""
    saved: list[str] = field(default_factory=list)


# ----- the child -----

def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _user_errors():
    from . import files
    from .session import NonFinite, StepError
    from .spec import SpecError
    from .tasks import TaskError
    return (SpecError, files.LoadError, StepError, NonFinite, TaskError, OSError)


def child_main(req: RunRequest, conn, cancel, progress) -> None:
    """Open, load, step and save as ``req`` says, reporting over ``conn`` (runs in the child)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the supervisor's to handle
    from .breakpoints import BreakpointError
    from .trust import UntrustedScript
    try:
        _child_run(req, conn, cancel, progress)
    except UntrustedScript as e:
        conn.send(("error", 2, f"{_one_line(e)}: pass --trust-script to run it"))
    except (BreakpointError, *_user_errors()) as e:
        conn.send(("error", 2, _one_line(e)))
    except Exception as e:  # noqa: BLE001 - anything else is still one line, never a traceback
        conn.send(("error", EXIT_DIED, f"{type(e).__name__}: {_one_line(e)}", traceback.format_exc()))
    finally:
        conn.close()


def _open(req: RunRequest):
    """The session, stepped (and a .json's journal replayed) with the torch thread count the
    app's runner process would use (``runner_process.threads_for``), or ``--threads``: on the
    CPU a reduction over more than 32,768 elements depends on it in its last bits."""
    import torch

    from . import session_file
    from .cli import resolve
    from .runner_process import threads_for
    path = resolve(req.session)
    if req.threads:
        torch.set_num_threads(req.threads)
    s = session_file.load_session(path)
    n = req.threads or threads_for(s)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
        if str(path).lower().endswith(".json"):  # its journal was replayed with another count: again
            s = session_file.load_session(path)
    return s


def _child_run(req: RunRequest, conn, cancel, progress) -> None:
    from . import files, session_file, trust
    from .cli import print_state_text
    from .spec import LoadOptimizer, LoadParams
    trust.trust_all(req.trust_script)
    for path, digest in req.trusted:
        trust.trust(path, digest)
    s = _open(req)
    if req.branch is not None or req.at is not None:
        s.goto(req.at, req.branch)
    if req.until:
        from .breakpoints import DEFAULTS, parse
        s.set_breakpoints(list(DEFAULTS) + [parse(c) for c in req.until])
    progress.value = s.step_count
    # loads go through the journal, so a saved session (.json too) replays them
    if req.load_optimizer:
        s.apply(LoadOptimizer(path=req.load_optimizer))
    if req.load_params:
        s.apply(LoadParams(path=req.load_params))

    def stop_here() -> bool:  # called before every step
        progress.value = s.step_count
        return cancel.is_set()
    s.run(req.steps, cancelled=stop_here)
    progress.value = s.step_count
    hit = s.last_hit
    measured = ""
    if req.measure_all and not cancel.is_set():
        from .remeasure import measure_skipped
        measured = measure_skipped(s, cancelled=cancel.is_set).message + "\n"
    writers = {"optimizer": files.save_optimizer, "params": files.save_params,
               "checkpoint": files.save_checkpoint, "session": session_file.save_session}
    for what, path in req.saves:
        writers[what](s, path)
        conn.send(("saved", path))
    if req.print_state:
        text = print_state_text(s)
    else:
        loss = s.loss_value()
        text = f"{s.spec.optimizer}: step {s.step_count}" + ("" if loss is None else f", loss {loss:.6g}") + "\n"
    text = measured + text
    stop = None
    if hit is not None:
        asked = hit.text in {parse_text(c) for c in req.until}
        stop = (f"stopped at step {hit.step}: {hit.text}" + ("" if not hit.detail else f" ({hit.detail})"), asked)
    from .torch_issues import for_optimizer
    conn.send(("done", s.step_count, text, stop, for_optimizer(s.optimizer)))


# ----- the supervisor -----

def parse_text(condition: str) -> str:
    """The canonical text of a breakpoint condition (as a hit names it)."""
    from .breakpoints import parse
    return parse(condition).text


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _saved_text(saved: list[str]) -> str:
    return "saved " + ", ".join(saved) if saved else "nothing was saved"


def supervise(req: RunRequest, timeout: float = 0.0) -> RunOutcome:
    """Run ``req`` in a child; return the exit code and what to print."""
    from .runner_process import context
    ctx = context()
    cancel, progress = ctx.Event(), ctx.Value("q", 0, lock=False)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child_main, args=(req, send, cancel, progress), name="optimlab-run", daemon=True)
    proc.start()
    send.close()
    deadline = time.monotonic() + timeout if timeout > 0 else None
    stop_reason, kill_at, killed = None, None, False
    saved: list[str] = []
    result = None
    while result is None:
        try:
            ready = wait([recv, proc.sentinel], timeout=0.25)  # wakes at once on a message or the child's end
            if recv in ready:
                try:
                    msg = recv.recv()
                except (EOFError, OSError):
                    break
                if msg[0] == "saved":
                    saved.append(msg[1])
                else:
                    result = msg
                continue
            if proc.sentinel in ready and not recv.poll(0):
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline and stop_reason is None:
                stop_reason, kill_at = "timeout", now + GRACE
                cancel.set()
            if kill_at is not None and now >= kill_at and proc.is_alive():
                proc.kill()
                killed = True
        except KeyboardInterrupt:
            if stop_reason is None:
                stop_reason = "interrupt"
                cancel.set()
            else:  # a second Ctrl+C: do not wait for the step
                proc.kill()
                killed = True
                stop_reason = "interrupt"
    proc.join(5)
    step = progress.value
    return _outcome(req, result, stop_reason, killed, proc.exitcode, step, saved, timeout)


def _outcome(req, result, stop_reason, killed, exitcode, step, saved, timeout) -> RunOutcome:
    if result is not None and result[0] == "error":
        return RunOutcome(result[1], err=f"optimlab: {result[2]}", saved=saved)
    if result is not None:  # done
        _, step, text, stop, issue = result
        if stop is not None:
            line, asked = stop
            if asked:  # --until: the run did what was asked
                return RunOutcome(0, out=line + "\n" + text, saved=saved)
            return RunOutcome(2, err=f"optimlab: {line}; {_saved_text(saved)}", saved=saved)
        if stop_reason == "interrupt":
            return RunOutcome(EXIT_INTERRUPTED, out=text, err=f"optimlab: interrupted at step {step}; "
                              f"{_saved_text(saved)}", saved=saved)
        if stop_reason == "timeout":
            return RunOutcome(EXIT_TIMEOUT, out=text, err=f"optimlab: --timeout {timeout:g} s reached at step "
                              f"{step}; {_saved_text(saved)}", saved=saved)
        return RunOutcome(0, out=text, err=f"optimlab: note: {issue}" if issue else "", saved=saved)
    where = f"at step {step}" if step else "before its first step"
    if killed:
        why = "interrupted" if stop_reason == "interrupt" else f"--timeout {timeout:g} s reached"
        code = EXIT_INTERRUPTED if stop_reason == "interrupt" else EXIT_TIMEOUT
        return RunOutcome(code, err=f"optimlab: {why} {where} while a step was still running; it was stopped, "
                          f"{_saved_text(saved)}", saved=saved)
    if exitcode is not None and exitcode < 0:
        how = f"was killed by {_signal_name(exitcode)}"
    else:
        how = f"exited with status {exitcode} before finishing"
    return RunOutcome(EXIT_DIED, err=f"optimlab: the run process {how} {where}; {_saved_text(saved)}", saved=saved)
