"""Recovering the session after its runner process died (killed for memory, a crash in native
code): the window keeps what rebuilds the current branch, and offers to rebuild it.

The session lives in the runner process; a process that ends takes it along. So whenever the
run stands still and something was done (steps, an edit, a rewind, a breakpoint), and every
few seconds while it runs, the window asks the runner for the branch's spec and journal (``core.edits.recovery_state``: small; the
data of loads only once). Steps are deterministic, so replaying the journal in a new runner
process gives the same values the branch had (``core.edits.recover``); the other branches come
back from the timeline's document (their journals: exact values when visited) with their
curves and distributions (sent once each time a branch stops being the current one). Steps taken after the last state the window got are simply to be run
again.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QMessageBox

from core import edits, paths, session_file

RUNNING_EVERY = 5.0  # seconds between recovery states asked for while the run goes on
WRITE_SHARE = 0.01  # and at most this share of the time writing them (a big checkpoint's data embedded)
DISK_BLOBS_AT_MOST = 64 << 20  # bytes of loaded data a recovery file may embed (else none is written)


def recovery_dir() -> Path:
    """Where a window keeps its recovery file (``OPTIMLAB_RECOVERY_DIR``, else
    ``$XDG_STATE_HOME/optimlab/recovery``, else ``~/.local/state/optimlab/recovery``)."""
    env = os.environ.get("OPTIMLAB_RECOVERY_DIR")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "optimlab" / "recovery"


def left_behind() -> list[Path]:
    """Recovery files whose window's process is gone (it ended without closing), newest first:
    a main window's session (``session-PID.json``) and its Compare windows' comparisons
    (``compare-PID-N.json``, ``app.compare_window``)."""
    d = recovery_dir()
    found = []
    for p in d.glob("*.json") if d.is_dir() else ():
        pid = _pid_of(p)
        if pid is not None and not paths._alive(pid):
            found.append(p)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _pid_of(p: Path) -> int | None:
    kind, _, rest = p.stem.partition("-")
    pid = rest.partition("-")[0] if kind == "compare" else rest
    return int(pid) if kind in ("session", "compare") and pid.isdigit() else None


def is_comparison(p: Path) -> bool:
    return p.stem.startswith("compare-")


class RecoveryFile:
    """A window's recovery file (``name`` in ``recovery_dir()``): written by a thread of its own,
    atomically and best effort (a file that cannot be written is simply not there to offer),
    and removed when the window closes as asked."""

    def __init__(self, name: str):
        self.path = recovery_dir() / name
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="optimlab-recovery")
        self._closed = False
        self.took = 0.0  # seconds the last write took

    def running_every(self) -> float:
        """Seconds between writes while the run goes on: RUNNING_EVERY, longer when a write takes
        more than WRITE_SHARE of that (the loads' data it embeds are encoded each time)."""
        return max(RUNNING_EVERY, self.took / WRITE_SHARE)

    def write(self, make, blobs: dict) -> None:
        """Write ``make()``'s bytes on the writer thread, unless the loads' data it embeds
        (``blobs``) exceed DISK_BLOBS_AT_MOST or the window has closed (an answer can arrive
        after it did)."""
        if not self._closed:
            self._writer.submit(self._write, make, blobs)

    def _write(self, make, blobs: dict) -> None:
        t0 = time.monotonic()
        try:
            from core.engine import Engine
            if Engine.state_bytes(blobs) > DISK_BLOBS_AT_MOST:  # the tensors of loaded state_dicts
                return
            data = make()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            paths.atomic_write(self.path, lambda f: f.write(data))
        except Exception:  # noqa: BLE001 - recovery must never disturb the session
            pass
        finally:
            self.took = time.monotonic() - t0

    def forget(self) -> None:
        """The window closes as asked: nothing to recover from it."""
        self._closed = True
        self._writer.shutdown(wait=True)
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass


def _count(n: int, what: str) -> str:
    return f"a {what}" if n == 1 else f"{n} {what}s"


class RecoveryUI:
    """Mixed into MainWindow: needs ``bridge``, ``replace_session``, ``show_error``, ``statusBar``,
    ``reopen_comparison`` (``app.compare_ui``)."""

    def init_recovery(self) -> None:
        self._recovery = None  # recovery_state's answer for the newest key
        self._recovery_blobs: dict = {}  # the loads' data it needs (kept across answers)
        self._recovery_curves: dict = {}  # the other branches' curves, by signature (kept across answers)
        self._recovery_asked = None  # the key last asked for
        self._recovery_at = 0.0  # when (time.monotonic)
        self.recovery_box: QMessageBox | None = None
        # the kept state is also written to disk, should the window's own process end: a window
        # started later offers it (offer_left_behind); a window that closes removes it
        self.recovery = RecoveryFile(f"session-{os.getpid()}.json")
        self.recovery_file = self.recovery.path

    def keep_recovery(self, s) -> None:
        """Ask for the branch's recovery state when it changed: at once when the run stands still,
        every RUNNING_EVERY seconds while it runs (an edit made meanwhile is kept too; less often
        when writing it takes long, ``RecoveryFile.running_every``)."""
        if self._building or self.bridge.crashed or s.error is not None:
            return
        now = time.monotonic()
        if (s.running or s.batch_total) and now - self._recovery_at < self.recovery.running_every():
            return
        key = (s.run_id, s.branch, s.step, s.head_step, s.journal_len, s.breakpoints, len(s.branches))
        if key == self._recovery_asked:
            return
        self._recovery_asked = key
        self._recovery_at = now

        def ok(state):
            if self._recovery_asked != key:
                return  # a newer question is out
            self._recovery_blobs = {k: v for k, v in {**self._recovery_blobs, **state["blobs"]}.items()
                                    if k in state["used"]}
            self._recovery_curves = {k: v for k, v in {**self._recovery_curves, **state["curves"]}.items()
                                     if k in state["curve_sigs"]}
            self._recovery = dict(state, blobs={}, curves={})
            st, blobs, curves = self._recovery, dict(self._recovery_blobs), dict(self._recovery_curves)
            self.recovery.write(lambda: session_file.recovery_json(
                st["spec"], st["journal"], blobs, None if st["at_head"] else st["step"],
                timeline=st["document"]["timeline"] if st["branches"] > 1 else None, curves=curves,
                index=st["index"]), blobs)
        self.bridge.call(edits.recovery_state, frozenset(self._recovery_blobs), frozenset(self._recovery_curves),
                         on_ok=ok, on_error=lambda *_: None)

    def offer_recovery(self, title: str, text: str, details: str) -> bool:
        """The runner process ended: say so, with a Recover button when there is something to
        rebuild. Returns False when there is not (the caller shows the plain error)."""
        st = self._recovery
        if st is None:
            return False
        others = st["branches"] - 1
        lost = others - sum(sig in self._recovery_curves for sig in st["curve_sigs"])
        curves = ("" if not others else f", with {'their' if others > 1 else 'its'} curves" if not lost
                  else f", without {'their' if others > 1 else 'its'} curves" if lost == others
                  else f" ({lost} without their curves)")
        more = (f"; its {others} other branch{'es' if others > 1 else ''} come{'' if others > 1 else 's'} back "
                f"too{curves}" if others else "")
        self.last_error = text
        self.statusBar().showMessage(text, 10_000)
        box = QMessageBox(QMessageBox.Icon.Warning, title,
                          f"{text}.\n\nRecover replays branch {st['branch']} from its journal to step "
                          f"{st['step']:,} in a new runner process{more}.", QMessageBox.StandardButton.Ok, self)
        self.recover_button = box.addButton("Recover", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(self.recover_button)
        if details:
            box.setDetailedText(details)
        box.buttonClicked.connect(lambda b: self.recover_session() if b is self.recover_button else None)
        self.recovery_box = box
        box.open()
        return True

    @Slot()
    def recover_session(self) -> None:
        """Rebuild the branch the recovery state describes, in a new runner process."""
        st = self._recovery
        if st is None:
            return

        def ok():
            self.statusBar().showMessage(f"Recovered: branch {st['branch']} at step {st['step']:,}", 10_000)
            self._mark()
        self.replace_session(edits.recover, st, dict(self._recovery_blobs), dict(self._recovery_curves), on_ok=ok,
                             fail_title="Cannot recover the session")

    # ----- on disk: a window whose own process ended -----

    def forget_recovery_file(self) -> None:
        self.recovery.forget()

    def offer_left_behind(self) -> bool:
        """At start: what a window left when its process ended is offered (the newest process's
        session and comparisons; older ones are removed). Returns whether anything was offered."""
        found = left_behind()
        if not found:
            return False
        pid = _pid_of(found[0])
        mine = [p for p in found if _pid_of(p) == pid]
        for old in found:
            if old not in mine:
                old.unlink(missing_ok=True)
        session = next((p for p in mine if not is_comparison(p)), None)
        comparisons = [p for p in mine if is_comparison(p)]
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(found[0].stat().st_mtime))
        if session is None:
            text = (f"optimlab ended unexpectedly while {_count(len(comparisons), 'comparison')} "
                    f"{'was' if len(comparisons) == 1 else 'were'} open (kept {when}). Reopen "
                    f"{'it? Its' if len(comparisons) == 1 else 'them? Their'} configurations are stepped again "
                    "in lockstep to the step they stood at.")
        elif not comparisons:
            text = (f"optimlab ended unexpectedly while a session was open (kept {when}). Reopen it? "
                    "Its branch is replayed from its journal to the step it stood at, and its other branches "
                    "come back from theirs.")
        else:
            text = (f"optimlab ended unexpectedly while a session and {_count(len(comparisons), 'comparison')} "
                    f"were open (kept {when}). Reopen them? The session's branches are replayed from their "
                    "journals and the configurations of each comparison stepped again in lockstep, to the steps "
                    "they stood at.")
        box = QMessageBox(QMessageBox.Icon.Question, "Recover what was open", text,
                          QMessageBox.StandardButton.Discard, self)
        self.reopen_button = box.addButton("Reopen", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(self.reopen_button)

        def answered(b):
            if b is self.reopen_button:
                if session is not None:
                    self._reopen_left(session)
                for p in comparisons:
                    self.reopen_comparison(p)
            else:
                for p in mine:
                    p.unlink(missing_ok=True)
        box.buttonClicked.connect(answered)
        self.left_box = box
        box.open()
        return True

    def _reopen_left(self, path: Path) -> None:
        def ok():
            self._set_document(None, "recovered session")  # Save asks where: not over the recovery file
            self.set_dirty(True)
            path.unlink(missing_ok=True)
            self.statusBar().showMessage("Recovered the session optimlab had open when it ended", 10_000)
        self.replace_session(edits.reopen_recovery, path, on_ok=ok, fail_title="Cannot recover the session",
                             about=path.name)

