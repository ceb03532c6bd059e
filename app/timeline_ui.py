"""The timeline in the window: the strip under the run controls, the Branches and Breakpoints
docks, Edit > Undo/Redo, the status line of every rebuild, and other branches' curves.

Mixed into MainWindow (needs ``bridge``, ``settings``, ``statusBar``, ``curves``, ``_dock``,
``adopt_spec`` and ``_mark``). Every request is a ``core.edits`` function sent to the runner;
what is shown comes from the frames (``draw_timeline``), never from what was asked.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFrame, QMenu, QVBoxLayout, QWidget

from core import edits
from core.breakpoints import BreakpointError, parse
from widgets.branch_list import MB, BranchList, branch_color
from widgets.breakpoint_list import BreakpointList
from widgets.timeline_strip import TimelineStrip

from .file_ops import add_action

DEFAULT_BUDGET_MB = 512
BUDGET_KEY = "timeline/checkpoint_mb"
EVERY_STEP_KEY = "curves/norms_every_step"
NOTICE_MS = 20_000


class TimelineUI:
    """Rewind, fork, switch branches, undo/redo, breakpoints and the checkpoints' bound."""

    # ----- building -----

    def build_timeline_strip(self, controls: QWidget) -> QWidget:
        """The Controls dock's contents: the run controls with the timeline strip under them."""
        self.timeline_strip = TimelineStrip()
        self._goto_next = None  # (step, branch) asked while another goto was being answered
        self._goto_asked = None  # the newest (step, branch) asked
        self._goto_busy = False
        host = QWidget()
        lay = QVBoxLayout(host)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        lay.addWidget(controls)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        lay.addWidget(line)
        lay.addWidget(self.timeline_strip)
        lay.addStretch(1)
        self.timeline_strip.gotoRequested.connect(lambda step: self.goto(step, self._shown_branch()))
        self.timeline_strip.headRequested.connect(lambda: self.goto(None, self._shown_branch()))
        return host

    def build_timeline_docks(self) -> None:
        R = Qt.DockWidgetArea.RightDockWidgetArea
        self.branch_list = BranchList()
        self.branches_dock = self._dock("Branches", self.branch_list, R)
        self.breakpoint_list = BreakpointList()
        self.breakpoints_dock = self._dock("Breakpoints", self.breakpoint_list, R)
        # a click on a curve or on a column of a distribution over time goes to that step
        self.curves.setStepClickable(True)
        self.curves.stepClicked.connect(self._clicked_step)
        self.tensor_panel.stepClicked.connect(self._clicked_step)
        self._overlays: dict[int, tuple] = {}  # branch -> (key, History) fetched
        self._overlay_asked: dict[int, tuple] = {}  # branch -> key being fetched
        self._overlay_drawn = None
        self._bp_busy = 0  # breakpoint changes in flight: frames must not undo the user's ticks meanwhile
        self._notice_shown = None
        self._budget_sent = None
        self.budget_wanted = self.settings.value(BUDGET_KEY, DEFAULT_BUDGET_MB, type=int) * MB
        self.branch_list.setBudgetShown(self.budget_wanted)
        self.branch_list.switchRequested.connect(lambda b: self.goto(None, b))
        self.branch_list.overlayToggled.connect(lambda *_: self._draw_overlays(self.snapshot))
        self.branch_list.budgetChanged.connect(self.set_checkpoint_budget)
        self.breakpoint_list.changeRequested.connect(self.set_breakpoints)

    def build_edit_menu(self, before) -> None:
        """Edit > Undo (Ctrl+Z) / Redo (Ctrl+Shift+Z), placed before the menu ``before``."""
        menu = QMenu("&Edit", self)
        self.menuBar().insertMenu(before.menuAction(), menu)
        self.edit_menu = menu
        self.undo_action = add_action(self, menu, "Undo", self.undo, "Ctrl+Z")
        self.redo_action = add_action(self, menu, "Redo", self.redo, "Ctrl+Shift+Z")
        self.undo_action.setToolTip("Back to where the session stood before the last change (nothing is lost: "
                                    "the change stays in its branch)")
        self.undo_action.setEnabled(False)
        self.redo_action.setEnabled(False)

    # ----- asking the runner -----

    def _shown_branch(self):
        return None if self.snapshot is None else self.snapshot.branch

    def _stop_run(self) -> None:
        """Rewinding, switching or undoing while the run goes on: pause it first (else the run would
        carry on from the step chosen and fork at once)."""
        s = self.bridge.latest()
        if s is not None and (s.running or s.batch_total):
            self.bridge.runner.pause()
            self.bridge.runner.cancel()

    def _clicked_step(self, step: int) -> None:
        """A click on a curve or a distribution's column: go there, while paused (a click while
        the run goes on, to look closer, should not stop it)."""
        s = self.bridge.latest()
        if s is not None and (s.running or s.batch_total):
            self.statusBar().showMessage(f"Pause to go to step {step:,} (a click on a plot goes to its step "
                                         "while paused)", 5_000)
            return
        self.goto(step, self._shown_branch())

    def step_back(self) -> None:
        """Run > Step back (Left): stand one step earlier on this branch (rewinding; stepping from
        there forks). Pressed again before the window has drawn the last one, it goes on from
        the step asked, not from the one shown."""
        s = self.snapshot
        if s is None:
            return
        at = s.step
        if self._goto_busy and self._goto_asked is not None and self._goto_asked[0] is not None \
                and self._goto_asked[1] in (None, s.branch):
            at = self._goto_asked[0]
        if at <= s.start_step:
            where = "the session's first step" if at == 0 else f"where branch {s.branch} begins"
            self.statusBar().showMessage(f"Step {at:,} is {where}: there is no step before it on this branch", 5_000)
            return
        self.goto(at - 1, s.branch)

    def goto(self, step: int | None, branch: int | None) -> None:
        """Stand at ``step`` (None: the last) of ``branch``; while one is being answered only the
        newest request waits (dragging the strip sends no flood)."""
        self._goto_next = (step, branch)
        self._goto_asked = (step, branch)
        if not self._goto_busy:
            self._send_goto()

    def _send_goto(self) -> None:
        (step, branch), self._goto_next = self._goto_next, None
        self._goto_busy = True
        self.timeline_strip.setHeld(True)
        self._stop_run()

        def refused(msg, _tb):
            self.last_error = msg
            self.statusBar().showMessage(msg, 10_000)
        self.bridge.call(edits.goto, step, branch, on_ok=lambda _: self._mark(), on_error=refused)
        self.bridge.call(edits.current_spec, on_ok=self._goto_done, on_error=lambda *_: self._goto_done(None))

    def _goto_done(self, spec) -> None:
        if spec is not None:
            self.adopt_spec(spec)
        if self._goto_next is not None:
            self._send_goto()
            return
        self._goto_busy = False
        self.timeline_strip.setHeld(False)

    def undo(self) -> None:
        self._timeline_call(edits.undo, "Undone", "Nothing to undo")

    def redo(self) -> None:
        self._timeline_call(edits.redo, "Redone", "Nothing to redo")

    def _timeline_call(self, fn, did: str, nothing: str) -> None:
        """Undo or redo, then say in the status bar where the session stands now."""
        self._stop_run()
        moved = []

        def ok(done):
            moved.append(done)
            if done:
                self._mark()
            else:
                self.statusBar().showMessage(nothing, 5_000)

        def where(pos):
            if moved and moved[0]:
                self.statusBar().showMessage(f"{did}: back to step {pos[1]:,} of branch {pos[0]}", NOTICE_MS)
        self.bridge.call(fn, on_ok=ok, on_error=lambda msg, tb: self.show_error("Refused", msg, tb))
        self.bridge.call(edits.current_spec, on_ok=self.adopt_spec)
        self.bridge.call(edits.position, on_ok=where)

    def set_breakpoints(self, entries) -> None:
        """Check the conditions here (one sentence beside the field for a bad one; a condition
        changed in place goes back to what it was), then against the session on the runner
        (a tensor or group it does not have)."""
        def refuse(msg):
            self.breakpoint_list.setRefusal(msg)
            s = self.bridge.latest()
            if s is not None:
                self.breakpoint_list.setBreakpoints(s.breakpoints)  # back to what holds
        checked = []
        try:
            for text, on in entries:
                checked.append((parse(text).text, bool(on)))
        except BreakpointError as e:
            refuse(str(e))
            return
        texts = [t for t, _ in checked]
        if len(set(texts)) < len(texts):
            refuse(f"'{next(t for t in texts if texts.count(t) > 1)}' is in the list already")
            return
        self._bp_busy += 1

        def done(_):
            self._bp_busy -= 1
            s = self.bridge.latest()  # published before this answer: it holds the change
            if s is not None and not self._bp_busy:
                # the frame may have been drawn while this was in flight (the list was left
                # alone then) and an idle runner sends no other: show it now
                self.breakpoint_list.setBreakpoints(s.breakpoints)

        def refused(msg, _tb):
            self._bp_busy -= 1
            refuse(msg)
        self.bridge.call(edits.set_breakpoints, checked, on_ok=done, on_error=refused)

    def build_norms_action(self, menu) -> None:
        """View > Norms at every step: the curves' grad/update norms and ratios for every step,
        not within their 2% share of the run's time (the run slows; remembered)."""
        self.norms_every_step = self.settings.value(EVERY_STEP_KEY, False, type=bool)
        self._norms_sent = None
        a = QAction("Norms at every step (slower)", self)
        a.setCheckable(True)
        a.setChecked(self.norms_every_step)
        a.toggled.connect(self.set_norms_every_step)
        menu.addAction(a)
        self.norms_action = a

    def set_norms_every_step(self, on: bool) -> None:
        self.norms_every_step = bool(on)
        self.settings.setValue(EVERY_STEP_KEY, self.norms_every_step)
        self._send_norms()

    def _send_norms(self) -> None:
        s = self.bridge.latest()
        self._norms_sent = (s.run_id if s is not None else "", self.norms_every_step)
        self.bridge.call(edits.set_norms_every_step, self.norms_every_step,
                         on_error=lambda msg, _tb: self.statusBar().showMessage(msg, 10_000))

    def set_checkpoint_budget(self, nbytes: int) -> None:
        """The checkpoints' memory bound (remembered for later sessions)."""
        self.budget_wanted = int(nbytes)
        self.settings.setValue(BUDGET_KEY, int(nbytes) // MB)
        self._send_budget()

    def _send_budget(self) -> None:
        s = self.bridge.latest()
        self._budget_sent = (s.run_id if s is not None else "", self.budget_wanted)
        self.bridge.call(edits.set_checkpoint_budget, self.budget_wanted,
                         on_error=lambda msg, _tb: self.statusBar().showMessage(msg, 10_000))

    # ----- drawing a frame -----

    def draw_timeline(self, s) -> None:
        self.timeline_strip.setPosition(s.step, s.head_step, s.branch, s.at_head, s.start_step)
        self.branch_list.setBranches(s.branches)
        self.branch_list.setMemory(s.checkpoint_bytes, s.checkpoint_budget)
        if s.checkpoint_budget and s.checkpoint_budget != self.budget_wanted \
                and self._budget_sent != (s.run_id, self.budget_wanted):
            self._send_budget()  # a session opened or built afresh starts at the default bound
        if self.norms_every_step and self._norms_sent != (s.run_id, True):
            self._send_norms()  # a session opened or built afresh measures within the budget
        if not self._bp_busy:
            self.breakpoint_list.setBreakpoints(s.breakpoints)
        if s.tensors:  # the examples under the field name a tensor and a state entry this session has
            t = s.tensors[0]
            self.breakpoint_list.setNames(t.name, next((k for k, v in t.state.items() if hasattr(v, "shape")
                                                        and getattr(v, "shape", ()) != ()), ""))
        self.undo_action.setEnabled(s.can_undo)
        self.redo_action.setEnabled(s.can_redo)
        self.tensor_panel.setEditable(not s.running, "pause the run to edit values")
        key = (s.run_id, s.notice)
        if s.notice and key != self._notice_shown and not s.paused_reason:
            self.statusBar().showMessage(s.notice, NOTICE_MS)
        self._notice_shown = key
        self._draw_overlays(s)

    def _draw_overlays(self, s) -> None:
        """Ticked branches' curves (fetched from the runner once per change of the branch)."""
        if s is None:
            return
        summaries = {b.id: b for b in s.branches}
        wanted = {}
        for b in sorted(self.branch_list.overlaid()):
            info = summaries.get(b)
            if info is None or b == s.branch:
                continue
            key = (s.run_id, info.steps, info.last_loss, info.reason)
            have = self._overlays.get(b)
            if have is not None and have[0] == key:
                wanted[b] = have
            elif self._overlay_asked.get(b) != key:
                self._overlay_asked[b] = key
                self.bridge.call(edits.branch_history, b, on_ok=lambda h, b=b, key=key: self._got_overlay(b, key, h),
                                 on_error=lambda *_, b=b: self._overlay_asked.pop(b, None))
        drawn = tuple((b, v[0]) for b, v in wanted.items())
        if drawn != self._overlay_drawn:
            self._overlay_drawn = drawn
            self.curves.setOverlays({b: (branch_color(b), v[1]) for b, v in wanted.items()})

    def _got_overlay(self, branch: int, key, history) -> None:
        self._overlay_asked.pop(branch, None)
        self._overlays[branch] = (key, history)
        self._draw_overlays(self.snapshot)
