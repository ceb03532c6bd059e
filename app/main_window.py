"""The main window: docks around the tensor views, menus, shortcuts and the status bar.

It owns a RunnerBridge; every user intent becomes a runner command or a call that
runs on the runner thread. Snapshots are drawn when the bridge says they changed.
"""
from __future__ import annotations

import time

from PySide6.QtCore import QSettings, Qt, Slot
from PySide6.QtWidgets import (QComboBox, QDockWidget, QFrame, QLabel, QMainWindow, QMessageBox, QScrollArea,
                               QVBoxLayout, QWidget)

from core import catalogue, edits
from core.observe import exact_value
from core.session import Session
from core.spec import AddGroup, Reset, SessionSpec, SetHparam, ZeroGrad
from widgets.curves import CurvesView
from widgets.landscape import LandscapeView
from widgets.problem_editor import ProblemEditor
from widgets.run_controls import RunControls
from widgets.state_tree import StateTree
from widgets.status import RateMeter, format_status
from widgets.tensor_panel import TensorPanel
from widgets.wheel_guard import guard

from . import optimizer_file, script_trust
from .add_group_dialog import AddGroupDialog
from .bridge import RunnerBridge, empty_snapshot
from .compare_ui import CompareUI
from .distributions_ui import DistributionsUI
from .explain_dialog import ExplainDialog
from .file_ops import FileOps, add_action
from .landscape_ui import LandscapeUI
from .layout import WindowLayout
from .messages import one_sentence
from .optimizer_panel import OptimizerPanel
from .recovery_ui import RecoveryUI
from .timeline_ui import TimelineUI
from .training import TrainingUI
from .value_edits import ValueEdits

SLOW_HZ = 5  # curves, state tree, landscape and optimizer-state views while running (each)
SLOW_PANELS = ("tensor", "curves", "state", "landscape", "decision")  # "tensor": its optimizer-state views


def _on_screen(widget) -> bool:
    return widget.isVisible() and not widget.visibleRegion().isEmpty()


class MainWindow(FileOps, TrainingUI, TimelineUI, RecoveryUI, ValueEdits, DistributionsUI, WindowLayout, LandscapeUI,
                 CompareUI, QMainWindow):
    """optimlab's window. ``session`` is sent to the runner (its own process) and never
    touched here again. Without one, the runner starts on a blank session and the window
    shows ``spec`` (if given) until ``open_initial`` has opened the real one there."""

    def __init__(self, session: Session | None = None, settings: QSettings | None = None,
                 spec: SessionSpec | None = None):
        super().__init__()
        self.settings = settings if settings is not None else QSettings("optimlab", "optimlab")
        # the spec of the session the runner owns, as last reported
        self.spec = session.spec if session is not None else (spec or edits.blank_spec())
        self._building = 0  # session replacements in flight
        self._opening: str | None = None  # the file being opened at start (nothing drawn meanwhile)
        self.bridge = RunnerBridge(session, self, shown=None if session is not None else empty_snapshot(self.spec))
        self.bridge.ask_trust = self.ask_trust
        self.snapshot = None
        self.last_error = ""  # the last message shown to the user (tests read it)
        self._shown_error = None
        self._paused_shown = None  # the pause reason shown in the status bar
        self.init_recovery()
        self._landscape_key = None
        self._history_drawn = None
        self.explain_dialog = None  # made at the first click on an element
        self._slow_drawn = dict.fromkeys(SLOW_PANELS, 0.0)  # while running: when each was last drawn
        self._rate = RateMeter()  # steps/s measured from the snapshots, while running
        self.init_files()
        self._build_docks()
        self._build_menus()
        self.invalid_note = QLabel()  # a refused field and the value still in force
        self.invalid_note.setStyleSheet("color: #d32f2f;")
        self.invalid_note.hide()
        self.statusBar().addPermanentWidget(self.invalid_note, 1)
        self.optimizer_panel.invalidChanged.connect(self._show_invalid)
        self.status = QLabel()
        self.statusBar().addPermanentWidget(self.status)
        self.bridge.snapshotChanged.connect(self.on_snapshot)
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self._restore_layout()
        self._fit_screen()
        self.set_dirty(False)
        self.on_snapshot(self.bridge.latest())

    # ----- layout -----

    def _build_docks(self) -> None:
        L, R = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        # centre: the selected tensor, its gradient and optimizer state
        centre = QWidget()
        self.tensor_combo = QComboBox()
        self.tensor_combo.setToolTip("The tensor shown: its value, gradient and every optimizer state entry")
        guard(self.tensor_combo)
        self.tensor_panel = TensorPanel()
        lay = QVBoxLayout(centre)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.tensor_combo)
        lay.addWidget(self.tensor_panel, 1)
        # the tensors are the centre of the window; everything else docks around them
        self.tensors_view = centre
        self.setCentralWidget(centre)
        self.controls = RunControls()
        self.controls_dock = self._dock("Controls", self.build_timeline_strip(self.controls), L)
        self.problem = ProblemEditor()
        self.problem.setDevices(catalogue.devices())
        self.problem_dock = self._dock("Problem", self.build_training(self.problem), L)
        self.optimizer_panel = OptimizerPanel()
        opt_host = QWidget()
        opt_lay = QVBoxLayout(opt_host)
        opt_lay.setContentsMargins(0, 0, 0, 0)
        opt_lay.addWidget(self.optimizer_panel)
        opt_lay.addWidget(self.scheduler_form)
        opt_lay.addStretch(1)
        # one scroll area for the whole dock: the form uses the height there is, and scrolls
        # as a whole when it needs more (not in a small box of its own above empty space)
        opt_scroll = QScrollArea()
        opt_scroll.setWidgetResizable(True)
        opt_scroll.setFrameShape(QFrame.Shape.NoFrame)
        opt_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        opt_scroll.setWidget(opt_host)
        self.optimizer_dock = self._dock("Optimizer", opt_scroll, L)
        self.curves = CurvesView()
        self.curves_dock = self._dock("Curves", self.curves, R)
        self.state_tree = StateTree()
        self.state_dock = self._dock("State dict", self.state_tree, R)
        self.landscape = LandscapeView()
        self.landscape_dock = self._dock("Landscape", self.landscape, R)
        self.decision_dock = self._dock("Decision boundary", self.decision, R)
        self.build_timeline_docks()
        self._default_layout()
        for d in (self.curves_dock, self.state_dock, self.landscape_dock, self.decision_dock):
            d.visibilityChanged.connect(lambda shown: shown and self._draw_slow(self.snapshot, force=True))

        self.problem.setSpec(self.spec)
        self.sync_training(self.spec)
        self.problem.specEdited.connect(self.on_spec_edited)
        self.optimizer_panel.optimizerChosen.connect(self.on_optimizer_chosen)
        self.optimizer_panel.fileRequested.connect(lambda: optimizer_file.choose(self))
        self.optimizer_panel.defaultChanged.connect(self.on_default_changed)
        self.optimizer_panel.groupValueChanged.connect(self.on_group_value)
        self.tensor_combo.currentTextChanged.connect(lambda _: self._draw_tensor())
        self.tensor_combo.currentTextChanged.connect(lambda _: self._send_shown())
        self._shown_sent = None  # (run, tensor) the runner was told the window shows
        self.tensor_panel.exactRequested.connect(self.on_exact_requested)
        self.tensor_panel.valueEdited.connect(self.on_value_edited)
        self.build_distributions()
        self.tensor_panel.explainRequested.connect(self.on_explain_requested)
        self.landscape.startRequested.connect(self.on_start_point)
        c = self.controls
        c.stepRequested.connect(self.step)
        c.runRequested.connect(self.run)
        c.pauseRequested.connect(self.pause)
        c.cancelRequested.connect(self.bridge.cancel)
        c.zeroGradRequested.connect(self.zero_grad)
        c.resetRequested.connect(self.reset)
        c.addGroupRequested.connect(self.add_group_dialog)
        c.speedLimitChanged.connect(self.bridge.set_rate_limit)
        c.setSetToNone(self.spec.set_to_none)

    def _build_menus(self) -> None:
        self.build_file_menu(self.menuBar().addMenu("&File"))
        run = self.menuBar().addMenu("&Run")

        def act(menu, text, slot, shortcut=None):
            return add_action(self, menu, text, slot, shortcut)
        self.run_action = act(run, "Run / Pause", self.toggle_run, "Space")
        self.step_action = act(run, "Step", lambda: self.step(1), "Right")
        act(run, "Step N", lambda: self.step(self.controls.stepCount()), "Shift+Right")
        self.step_back_action = act(run, "Step back (rewind one step)", self.step_back, "Left")
        act(run, "Go to the last step", lambda: self.goto(None, self._shown_branch()), "End")
        act(run, "Zero grad", lambda: self.zero_grad(self.controls.setToNone()))
        act(run, "Reset", self.reset)
        act(run, "Add param group…", self.add_group_dialog)
        self.build_compare_menu(self.menuBar().addMenu("&Compare"))
        view = self.menuBar().addMenu("&View")
        for d in self.findChildren(QDockWidget):
            view.addAction(d.toggleViewAction())
        view.addSeparator()
        self.build_norms_action(view)
        self.measure_action = act(view, "Measure the skipped steps (replays them)", self.measure_skipped)
        act(view, "Reset layout", self._default_layout)
        self.build_edit_menu(before=run)

    # ----- driving the runner -----

    def _mark(self) -> None:
        self.set_dirty(True)

    @Slot(int)
    def step(self, n: int = 1) -> None:
        self.bridge.runner.step(n)
        self._mark()

    @Slot()
    def run(self) -> None:
        self.bridge.runner.run()
        self._mark()

    @Slot()
    def pause(self) -> None:
        self.bridge.runner.pause()

    def toggle_run(self) -> None:
        snap = self.bridge.latest()
        if snap.running:
            self.pause()
        else:
            self.run()

    def apply(self, action, on_ok=None) -> None:
        """Apply a journal action on the runner thread; a refusal is shown and changes nothing."""
        def ok(_):
            self._mark()
            if on_ok:
                on_ok()

        def fail(msg, tb):
            self.optimizer_panel.revert()  # a refused hyperparameter must not stay in the form
            self.show_error("Refused", msg, tb)
        self.bridge.call(edits.apply, action, on_ok=ok, on_error=fail)

    @Slot(bool)
    def zero_grad(self, set_to_none: bool) -> None:
        self.apply(ZeroGrad(set_to_none))

    @Slot()
    def reset(self) -> None:
        if self.bridge.crashed:  # the session died with its process: start again from the spec
            self.replace_session(edits.build, self.spec, on_ok=self._mark)
            return
        self.bridge.runner.pause()
        self.bridge.runner.cancel()  # a Step N in progress must not carry on from step 0
        self.apply(Reset())

    @Slot()
    def add_group_dialog(self) -> None:
        snap = self.bridge.latest()
        dlg = AddGroupDialog(snap.optimizer, {t.name for t in snap.tensors}, self, defaults=snap.defaults)
        dlg.finished.connect(lambda code: self._add_group_done(dlg, code))
        dlg.open()
        self.add_dialog = dlg  # tests fill it in

    def _add_group_done(self, dlg, code) -> None:
        if code and dlg.result_action is not None:
            self.add_group(dlg.result_action)

    def add_group(self, action: AddGroup) -> None:
        self.apply(action)

    def replace_session(self, build, *args, on_ok=None, on_fail=None,
                        fail_title: str = "Cannot build this session", about: str | None = None) -> None:
        """Build a session on the runner with ``build(current session, *args)`` (a function of
        ``core.edits``) and swap it in; a refusal changes nothing. Builders run in request
        order on the runner, so quick successive edits each start from the one before."""
        self._building += 1
        restarted = self.bridge.crashed  # a new runner process: it needs the speed limit again

        def ok(new_spec):
            self._building -= 1
            self.adopt_spec(new_spec, force=True)
            self.tensor_panel.resetViews()  # a zoom into the old session's tensors means nothing here
            if on_ok:
                on_ok()

        def fail(msg, tb):
            self._building -= 1
            if self._building == 0:
                self.problem.setSpec(self.spec)
                self.optimizer_panel.revert()
            self.show_error(fail_title, msg, tb, about=about)
            if on_fail:
                on_fail()
        self.bridge.replace(build, *args, on_ok=ok, on_error=fail)
        if restarted:
            self.bridge.runner.set_rate_limit(self.controls.speedLimit())

    def adopt_spec(self, new_spec, force: bool = False) -> None:
        """The runner's session now stands on ``new_spec`` (built, or another branch after a goto,
        undo or redo): the Problem dock, the training panel and the landscape follow it."""
        old = self.spec
        if new_spec == old and not force:
            return
        self.spec = new_spec
        if self._building == 0:  # an edit still in flight would be undone by a refresh now
            self.problem.setSpec(new_spec)
            self.sync_training(new_spec)
        if new_spec.set_to_none != old.set_to_none:
            self.controls.setSetToNone(new_spec.set_to_none)
        self._landscape_key = None
        self._draw_landscape(self.bridge.latest())  # the new objective's map now, not at the next step

    @Slot(object)
    def on_spec_edited(self, spec) -> None:
        # the Problem dock owns tensors, groups, gradient and session fields; the optimizer and
        # its constructor arguments come from the newest built spec (the Optimizer dock's edits)
        self.replace_session(edits.with_problem, spec, on_ok=self._mark)

    @Slot(str)
    def on_optimizer_chosen(self, name: str) -> None:
        self.replace_session(edits.with_optimizer, name, on_ok=self._mark)

    @Slot(str, object)
    def on_default_changed(self, name: str, value) -> None:
        self.replace_session(edits.with_default, name, value, on_ok=self._mark)

    @Slot(int, str, object)
    def on_group_value(self, group: int, name: str, value) -> None:
        self.apply(SetHparam(group, name, value))

    @Slot(str, str, tuple)
    def on_exact_requested(self, name: str, which: str, index: tuple) -> None:
        self.bridge.call(exact_value, name, which, index,
                         on_ok=lambda v: self.tensor_panel.showExact(name, which, index, v))

    def on_explain_requested(self, name: str, index: tuple, step: int | None = None) -> None:
        """Explain ``name[index]``'s update at ``step`` (default: the last step taken) in the Explain
        dialog; computed on the runner, which replays to that step on an engine of its own."""
        snap = self.bridge.latest()
        if snap is None or snap.running or snap.batch_total > 0:
            self.statusBar().showMessage("Pause the run to explain an update", 5000)
            return
        dlg = self.explain_dialog
        if dlg is None:
            dlg = self.explain_dialog = ExplainDialog(self)
            dlg.requested.connect(lambda n, i, k: self.on_explain_requested(n, i, k))
        step = snap.step if step is None else step
        dlg.ask(name, index, step)
        dlg.show()
        dlg.raise_()
        dlg.request(self.bridge, edits.explain_update, name, index, max(1, step))

    # ----- drawing -----

    @Slot(object)
    def on_snapshot(self, s) -> None:
        if s is None:  # nothing published yet (a runner process still starting)
            return
        self.snapshot = s
        if self._opening is not None:  # the runner's stand-in session, not what is being opened
            self.status.setText(f"opening {self._opening}…")
            return
        busy = s.batch_total > 0
        self.controls.setRunning(s.running and not busy)
        self.controls.setBusy(busy)
        self.controls.setProgress(s.batch_done, s.batch_total)
        self.problem.setLocked(s.running)
        if self.spec.gradient.kind != "task":
            added = set(s.added)
            self.problem.setAddedTensors([(t.name, t.value.shape, t.group) for t in s.tensors if t.name in added])
        self.task_editor.setLocked(s.running)
        self.scheduler_form.setLocked(s.running)
        names = [t.name for t in s.tensors]
        if names != [self.tensor_combo.itemText(i) for i in range(self.tensor_combo.count())]:
            current = self.tensor_combo.currentText()
            self.tensor_combo.blockSignals(True)
            self.tensor_combo.clear()
            self.tensor_combo.addItems(names)
            self.tensor_combo.setCurrentText(current if current in names else (names[0] if names else ""))
            self.tensor_combo.blockSignals(False)
        self._send_shown()
        # The slower panels (and the optimizer-state views) redraw at most SLOW_HZ while running,
        # only when on screen, and one of them a snapshot (the one drawn longest ago): drawn
        # together (curves 6-13 ms, the state tree 6-7 ms, then their painting) they had held
        # the GUI thread 25-80 ms at a time. The weight and its gradient follow every snapshot.
        panel = self._next_slow(time.perf_counter()) if s.running else None
        self._draw_tensor(None if not s.running or panel == "tensor" else ("value", "grad"))
        if not s.running:
            self._draw_slow(s)
        elif panel != "tensor" and panel is not None:
            self._draw_slow(s, only=panel)
        self.optimizer_panel.setState(s.optimizer, self.spec.hparams, s.groups, s.step)
        rate = self._rate.update(time.perf_counter(), s.step, s.running)
        self.status.setText(format_status(s.step, s.loss, rate, s.device, s.running))
        self.draw_timeline(s)
        if s.error is not None and s.error != self._shown_error:
            self._shown_error = s.error
            if not (self.bridge.crashed and self.offer_recovery("The run stopped", s.error.message, s.error.traceback)):
                self.show_error("The run stopped", f"{s.error.type}: {s.error.message}", s.error.traceback)
        elif s.paused_reason and s.paused_reason != self.statusBar().currentMessage():
            self.statusBar().showMessage(s.paused_reason)
        if not s.paused_reason and self._paused_shown and self.statusBar().currentMessage() == self._paused_shown:
            self.statusBar().clearMessage()  # the pause note is stale once the run moved on
        self._paused_shown = s.paused_reason
        self.keep_recovery(s)

    def _slow_widget(self, panel: str):
        return {"tensor": self.tensor_panel, "curves": self.curves, "state": self.state_tree,
                "landscape": self.landscape, "decision": self.decision}[panel]

    def _next_slow(self, now: float) -> str | None:
        """The on-screen slow panel drawn longest ago, if it is due (then marked drawn now)."""
        shown = [p for p in SLOW_PANELS if p == "tensor" or _on_screen(self._slow_widget(p))]
        panel = min(shown, key=self._slow_drawn.__getitem__)
        if now - self._slow_drawn[panel] < 1.0 / SLOW_HZ:
            return None
        self._slow_drawn[panel] = now
        return panel

    def _draw_slow(self, s, force: bool = False, only: str | None = None) -> None:
        """The slow panels (those on screen, or all with ``force``; or just ``only``)."""
        if s is None:
            return

        def due(panel: str) -> bool:
            return (only is None or only == panel) and (force or _on_screen(self._slow_widget(panel)))
        if due("curves") and s.history is not self._history_drawn:
            self.curves.setHistory(s.history, live=s.running)
            self._history_drawn = s.history
        if due("state"):
            self.state_tree.setSnapshot(s)
        if due("landscape"):
            self._draw_landscape(s)
        if due("decision"):
            self.draw_decision(s)

    def _send_shown(self) -> None:
        """Tell the runner which tensor is shown (frames while running carry its values and
        small tensors', statistics for the rest); again for each new session."""
        s = self.snapshot
        if s is None or self._opening is not None:
            return
        want = (s.run_id, self.tensor_combo.currentText())
        if want != self._shown_sent:
            self._shown_sent = want
            self.bridge.call(edits.show_tensor, want[1], on_error=lambda *_: None)  # a stale session: the next frame asks again

    def _draw_tensor(self, only=None) -> None:
        if self.snapshot is None:
            return
        self.tensor_panel.setTensor(self.snapshot.tensor(self.tensor_combo.currentText()), only)
        if only is None:
            self.draw_distributions()  # another tensor or new entries: their own histories

    @Slot(str)
    def _show_invalid(self, text: str) -> None:
        self.invalid_note.setText(text)
        self.invalid_note.setToolTip(text)
        self.invalid_note.setVisible(bool(text))

    def ask_trust(self, path: str, digest: str, what: str = "task script") -> bool:
        """Ask before a session runs a Python script (a task script or an optimizer file);
        remember a yes for this file's contents."""
        if not script_trust.ask(self, path, digest, what):
            return False
        script_trust.remember(self.settings, path, digest)
        return True

    def show_error(self, title: str, text: str, details: str = "", about: str | None = None) -> None:
        """One plain sentence in a non-blocking message box (naming ``about``, a file, if the
        sentence does not); a traceback only under "Show Details…"; the window stays usable."""
        text, details = one_sentence(text, details)
        if about and about not in text:
            text = f"{about}: {text}"
        self.last_error = text
        self.statusBar().showMessage(text, 10000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        if details:
            box.setDetailedText(details)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.error_box = box

    # ----- closing -----

    def closeEvent(self, event) -> None:
        if self.dirty and not self.confirm_discard() or not self.close_comparisons():
            event.ignore()
            return
        self.save_layout()
        self.bridge.shutdown()
        self.forget_recovery_file()
        event.accept()

