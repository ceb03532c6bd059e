"""Recovering the session after its runner process died (killed for memory, a crash in native
code): the window keeps what rebuilds the current branch, and offers to rebuild it.

The session lives in the runner process; a process that ends takes it along. So whenever the
run stands still and something was done (steps, an edit, a rewind, a breakpoint), and every
few seconds while it runs, the window asks the runner for the branch's spec and journal (``core.edits.recovery_state``: small; the
data of loads only once). Steps are deterministic, so replaying the journal in a new runner
process gives the same values the branch had (``core.edits.recover``); the other branches come
back from the timeline's document (their journals: exact values when visited; their curves
were in the process). Steps taken after the last state the window got are simply to be run
again.
"""
from __future__ import annotations

import time

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QMessageBox

from core import edits

RUNNING_EVERY = 5.0  # seconds between recovery states asked for while the run goes on


class RecoveryUI:
    """Mixed into MainWindow: needs ``bridge``, ``replace_session``, ``show_error``, ``statusBar``."""

    def init_recovery(self) -> None:
        self._recovery = None  # recovery_state's answer for the newest key
        self._recovery_blobs: dict = {}  # the loads' data it needs (kept across answers)
        self._recovery_asked = None  # the key last asked for
        self._recovery_at = 0.0  # when (time.monotonic)
        self.recovery_box: QMessageBox | None = None

    def keep_recovery(self, s) -> None:
        """Ask for the branch's recovery state when it changed: at once when the run stands still,
        every RUNNING_EVERY seconds while it runs (an edit made meanwhile is kept too)."""
        if self._building or self.bridge.crashed or s.error is not None:
            return
        now = time.monotonic()
        if (s.running or s.batch_total) and now - self._recovery_at < RUNNING_EVERY:
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
            self._recovery = dict(state, blobs={})
        self.bridge.call(edits.recovery_state, frozenset(self._recovery_blobs), on_ok=ok,
                         on_error=lambda *_: None)

    def offer_recovery(self, title: str, text: str, details: str) -> bool:
        """The runner process ended: say so, with a Recover button when there is something to
        rebuild. Returns False when there is not (the caller shows the plain error)."""
        st = self._recovery
        if st is None:
            return False
        others = st["branches"] - 1
        more = (f"; its {others} other branch{'es' if others > 1 else ''} come{'' if others > 1 else 's'} back "
                f"too, without {'their' if others > 1 else 'its'} curves" if others else "")
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
        self.replace_session(edits.recover, st, dict(self._recovery_blobs), on_ok=ok,
                             fail_title="Cannot recover the session")
