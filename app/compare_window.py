"""The Compare window: 2 to 6 configurations of one problem stepped in lockstep by a runner of
its own, drawn by ``widgets.compare_view.CompareView``.

It owns a RunnerBridge like the main window's; the runner steps a ``core.compare.Comparison``
(built there by ``core.compare_edits``), and the window draws the comparison frames it
publishes. The side panel (``app.compare_panel``) lists the configurations and adds one (an
optimizer, its arguments and an lr scheduler): adding sends it to the runner, where it starts
from the runs' first step (0, or a resumed checkpoint's, ``core.compare.config_run``) and catches
up; removing drops one there, the others untouched. Save and Open
write and read one ``.optimlab-compare`` file.
"""
from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QMainWindow, QPushButton, QScrollArea, QSpinBox,
                               QSplitter, QVBoxLayout, QWidget)

from core import compare_edits, compare_recovery, edits
from core.compare import MAX_RUNS, MIN_RUNS, RunSpec, config_run, hparams_from_text
from core.compare_file import EXT
from core.compare_frame import ComparisonFrame
from core.spec import SessionSpec, SpecError
from widgets.compare_view import CompareView
from widgets.status import RateMeter, format_rate

from .bridge import RunnerBridge
from .compare_panel import ConfigPanel
from .layout import fit_screen
from .measure_slices import MeasureInSlices
from .messages import one_sentence, save_first
from .recovery_ui import RecoveryFile


def second_config(first: RunSpec) -> RunSpec:
    """What a comparison of one configuration is compared with first: Adam (SGD for Adam)."""
    other = "SGD" if first.spec.optimizer == "Adam" else "Adam"
    return config_run(first.spec, other, {}, None, first.blobs)


NOTE_MS = 8000  # how long a note of what just happened stays under the tabs
_window_ids = itertools.count(1)


class CompareWindow(QMainWindow):
    """A comparison's own window. ``runs``: RunSpecs to start with (one gets a second, see
    ``second_config``); ``path``: a saved comparison to open instead; ``recovered``: a recovery
    file a window left when its process ended (``core.compare_recovery``)."""

    def __init__(self, runs=(), path: str | None = None, process: bool | None = None, parent=None,
                 recovered: str | None = None):
        super().__init__(parent)
        self.setWindowTitle("optimlab · Compare")
        fit_screen(self, 1200, 800)  # at 1024x700 it ran off the screen with Save, Open and its status
        self.base: SessionSpec | None = None  # the problem every run shares (from the runner)
        self.frame: ComparisonFrame | None = None
        self.last_error = ""  # the last sentence shown (tests read it)
        self.path: Path | None = None  # the file it was opened from or last saved to
        self.dirty = False  # steps or configurations since it was built, opened or saved
        self._saved_key = None  # (step, runs) as then; None: the next frame's
        self.rate = RateMeter()  # measured here over half a second of running, as the main window does
        self.bridge = RunnerBridge(None, self, process=process)
        self.bridge.snapshotChanged.connect(self.on_frame)
        self._recovery = None  # the RunSpecs that rebuild the comparison (compare_edits.recovery_runs)
        self._recovery_key = None
        # they are also written to disk with the step, should the window's own process end (the
        # main window offers them at the next start, app.recovery_ui); removed on a normal close
        self.recovery = RecoveryFile(f"compare-{os.getpid()}-{next(_window_ids)}.json")
        self.recovery_file = self.recovery.path
        self._written = None  # (runs, step) last written
        self._written_at = 0.0
        self._floor = 0  # a recovered comparison's step while it is stepped there again
        self.view = CompareView()
        self.view.landscapeWanted.connect(self._want_landscape)
        self.view.shownChanged.connect(self._send_view)
        self.view.tensors.explainRequested.connect(self.explain)
        self.explain_dialog = None  # made at the first click on an element
        self._build(self.view)
        runs = list(runs)
        if recovered is not None:
            self.open_recovered(recovered)
        elif path is not None:
            self.open_path(path)
        elif runs:
            if len(runs) == 1:
                runs.append(second_config(runs[0]))
            self.bridge.replace(compare_edits.build, runs, on_ok=self._took, on_error=self._failed)

    # ----- layout -----

    def _build(self, view) -> None:
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.toggle_run)
        self.steps = QSpinBox()
        self.steps.setRange(1, 1_000_000)
        self.steps.setValue(100)
        step = QPushButton("Step N")
        step.clicked.connect(lambda: self.step(self.steps.value()))
        self.panel = ConfigPanel(lambda: len(self.frame.runs[0].snapshot.groups) if self.frame else 1)
        self.panel.addRequested.connect(self.add_from_form)
        self.panel.removeRequested.connect(self.remove)
        self.panel.exportRequested.connect(self.ask_export)
        self.optimizer, self.args, self.scheduler = self.panel.optimizer, self.panel.args, self.panel.scheduler
        save, opn = QPushButton("Save…"), QPushButton("Open…")
        save.clicked.connect(self._ask_save)
        opn.clicked.connect(self._ask_open)
        self.measure_button = QPushButton("Measure every step")
        self.measure_button.setToolTip(
            "While running, norms, histograms and the distance and cosine between runs are measured within a "
            "small share of the time. This replays the runs' unmeasured steps exactly and measures every one")
        self.measure_button.clicked.connect(self.measure_skipped)
        self.recover_button = QPushButton("Recover")
        self.recover_button.setToolTip("The runner process ended: build the same configurations in a new one "
                                       "and step them in lockstep to the step the comparison stood at")
        self.recover_button.clicked.connect(self.recover)
        self.recover_button.hide()
        bar = QHBoxLayout()
        for w in (self.run_button, step, self.steps, self.measure_button, self.recover_button):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(save)
        bar.addWidget(opn)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self._note = ""
        self._note_timer = QTimer(self)  # the window's own: it ends with the window
        self._note_timer.setSingleShot(True)
        self._note_timer.timeout.connect(self._note_expired)
        self._measure = MeasureInSlices(
            self.bridge, compare_edits.measure_skipped, running=lambda: self.frame is not None and self.frame.running,
            say=lambda text, _ms: (self._clear_error(), self.status.setText(text)),
            busy=lambda on: self.measure_button.setText("Stop measuring" if on else "Measure every step"),
            redraw=lambda: None, what="the runs")
        side = QScrollArea()
        side.setWidgetResizable(True)
        side.setWidget(self.panel)
        side.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # it fits its width
        side.setMinimumWidth(self.panel.minimumSizeHint().width() + side.verticalScrollBar().sizeHint().width() + 4)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(side)
        split.addWidget(view)
        split.setStretchFactor(1, 1)
        split.setSizes([300, 900])
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.addLayout(bar)
        lay.addWidget(split, 1)
        lay.addWidget(self.status)
        self.setCentralWidget(central)

    # ----- driving the runner -----

    @Slot()
    def toggle_run(self) -> None:
        if self.frame is not None and self.frame.running:
            self.bridge.runner.pause()
        else:
            self.bridge.runner.run()

    def step(self, n: int) -> None:
        self.bridge.runner.step(n)

    def add(self, rs: RunSpec) -> None:
        """Add a configuration: on the runner it starts from the runs' first step and catches up."""
        self._send_add(compare_edits.add_run, rs)

    def _send_add(self, fn, *args) -> None:
        if self.frame is not None and len(self.frame.runs) >= MAX_RUNS:
            self.show_error(f"A comparison holds at most {MAX_RUNS} configurations")
            return
        self.bridge.call(fn, *args, on_ok=lambda label: self._say(f"Added {label}"), on_error=self._failed)

    @Slot()
    def add_from_form(self) -> None:
        """Add the form's optimizer with its arguments and the scheduler chosen below them."""
        if self.base is None:
            self.show_error("There is no comparison yet to add a configuration to")
            return
        if self.scheduler.errorText():
            self.show_error(f"Scheduler: {self.scheduler.errorText()}")
            return
        name = self.optimizer.currentText()
        try:
            hparams = hparams_from_text(name, self.args.text())
        except (SpecError, ValueError) as e:
            self.show_error(str(e))  # nothing is sent; the form keeps its text to correct
            return
        # made on the runner (Comparison.config): a resumed problem's needs the checkpoint's data there
        self._send_add(compare_edits.add_config, name, hparams, self.scheduler.scheduler())

    @Slot(int)
    def remove(self, run_id: int) -> None:
        """Drop one configuration on the runner; the others go on untouched (at least 2 stay)."""
        runs = self.frame.runs if self.frame is not None else ()
        gone = next((r for r in runs if r.id == run_id), None)
        if gone is None:
            self.show_error("Choose the configuration to remove in the list first")
        elif len(runs) <= MIN_RUNS:
            self.show_error(f"A comparison needs at least {MIN_RUNS} configurations: add another before "
                            f"removing {gone.label}")
        else:
            self.bridge.call(compare_edits.remove_run, run_id, on_ok=lambda _: self._say(f"Removed {gone.label}"),
                             on_error=self._failed)

    def save_to(self, path: str) -> None:
        key = self._frame_key()

        def ok(_):
            self._saved(path, key)
            self._say(f"Saved {path}")
        self.bridge.call(compare_edits.save, path, on_ok=ok,
                         on_error=lambda m, tb: self.show_error(f"Not saved: {m}", path))

    def open_path(self, path: str) -> None:
        """Open a saved comparison; if it cannot be read, the one on screen stays."""
        def ok(spec):
            self._took(spec)
            self.path = Path(path)
            self._set_dirty(False)
        self.bridge.replace(compare_edits.open_comparison, path, on_ok=ok,
                            on_error=lambda m, tb: self.show_error(m, path))

    # ----- unsaved work -----

    def _frame_key(self):
        f = self.frame
        return None if f is None else (f.step, tuple((r.id, r.label) for r in f.runs))

    def _saved(self, path, key) -> None:
        self.path = Path(path)
        self._saved_key = key
        self._set_dirty(self._frame_key() != key)

    def _set_dirty(self, on: bool) -> None:
        self.dirty = on
        name = f" — {self.path.name}" if self.path is not None else ""
        title = f"optimlab · Compare{name}{' *' if on else ''}"
        if title != self.windowTitle():
            self.setWindowTitle(title)

    def confirm_discard(self) -> bool:
        """Ask before losing an unsaved comparison: Save, Discard or Cancel."""
        return save_first(self, "Unsaved comparison",
                          "This comparison has steps or configurations that are not saved. Save it first?",
                          self._save_now)

    def _save_now(self) -> bool:
        """Save before closing; wait for it (the caller needs the answer)."""
        path = str(self.path) if self.path is not None else self._ask_save_path()
        if not path:
            return False
        key = self._frame_key()
        try:
            self.bridge.runner.call(compare_edits.save, path).result(60)
        except Exception as e:  # noqa: BLE001 - shown; the window stays open with its comparison
            self.show_error(f"Not saved: {one_sentence(str(e) or type(e).__name__, '')[0]}", Path(path).name)
            return False
        self._saved(path, key)
        return True

    def _ask_save(self) -> None:
        path = self._ask_save_path()
        if path:
            self.save_to(path)

    def _ask_save_path(self) -> str:
        start = str(self.path) if self.path is not None else ""
        path, _ = QFileDialog.getSaveFileName(self, "Save comparison", start, f"Comparisons (*{EXT})")
        return path if not path or path.endswith(EXT) else path + EXT

    def measure_skipped(self) -> None:
        """Replay and measure what the runs left unmeasured (``app.measure_slices``); a second
        press stops after the current slice. The frames that follow carry the filled curves."""
        if self.frame is not None or self._measure.active:
            self._measure.toggle()

    def _ask_open(self) -> None:
        if self.dirty and not self.confirm_discard():  # it would replace this one
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open comparison", "", f"Comparisons (*{EXT})")
        if path:
            self.open_path(path)

    def _want_landscape(self, objective: str, condition: float) -> None:
        self.bridge.call(edits.landscape, objective, condition, on_ok=lambda grid: self.view.setLandscape(*grid))

    # ----- answers -----

    def _send_view(self, shown) -> None:
        """Frames carry the values of the tensor the Tensors tab shows, no other (their cost)."""
        self.bridge.call(compare_edits.set_view, shown)

    def _took(self, spec) -> None:
        self.base = spec
        self._floor = 0
        self.path, self._saved_key = None, None  # a new comparison: unsaved from its first frame
        self._clear_error()
        self._send_view(self.view.shown())  # a new comparison on the runner: it starts with all

    def _failed(self, msg: str, tb: str = "") -> None:
        self.show_error(msg)

    def _say(self, text: str) -> None:
        """What just happened, in the line under the tabs for NOTE_MS (the status bar is the
        frames' own: the next frame would overwrite it at once); it supersedes an earlier refusal."""
        self._clear_error()
        self.status.setText(text)
        self._note = text
        self._note_timer.start(NOTE_MS)

    def _note_expired(self) -> None:
        if self.status.text() == self._note:  # not superseded meanwhile
            self.status.setText("")

    def _clear_error(self) -> None:
        self.last_error = ""
        self.status.setText("")

    def show_error(self, text: str, about: str | None = None) -> None:
        """One sentence in the status line (naming ``about``, a file); the comparison stays as it was."""
        text, _ = one_sentence(text, "")
        if about and about not in text:
            text = f"{about}: {text}"
        self.last_error = text
        self.status.setText(f"<span style='color:#e06c5a'>{text}</span>")

    @Slot(object)
    def on_frame(self, f) -> None:
        if not isinstance(f, ComparisonFrame):
            return  # the blank session the runner starts on
        self.frame = f
        key = (f.step, tuple((r.id, r.label) for r in f.runs))
        if self._saved_key is None:
            self._saved_key = key
        self._set_dirty(key != self._saved_key)
        self.run_button.setText("Pause" if f.running else "Run")
        self.view.setFrame(f)
        self.panel.setRuns(f.runs, self.view.slots)
        halted = [f"{r.label} stopped at step {r.snapshot.step:,}: {r.halted}" for r in f.runs if r.halted]
        parts = [f"step {f.step:,}", f"{len(f.runs)} configurations"]
        # the runner's own rate kept a stale interval's value after a Step N ("0 lockstep steps/s")
        sps = self.rate.update(time.perf_counter(), f.step, f.running)
        if not f.running:
            parts.append("paused" if f.step else "ready")
        elif sps is not None:
            parts.append(f"{format_rate(sps)} lockstep steps/s")
        crashed = self.bridge.crashed
        if f.error is not None and crashed:  # the runner's sentence speaks of a session
            what = f.error.message.split(";")[0]
            parts.append(f"{what}; Recover builds the configurations again and steps them to step {f.step:,}"
                         if self._recovery is not None else f"{what}; open a saved comparison or start another")
        elif f.error is not None:
            parts.append(f"error: {f.error.message}")
        elif f.paused_reason:
            parts.append(f.paused_reason)
        self.statusBar().showMessage(" · ".join(parts + halted))
        self.recover_button.setVisible(crashed and self._recovery is not None)
        if not crashed:
            self._keep_recovery(f)

    def _keep_recovery(self, f) -> None:
        """Ask for the configurations that rebuild the comparison when its runs changed (added,
        removed, another comparison); the step comes with every frame. Both go to disk when they
        changed: at once while the comparison stands still, every few seconds while it runs
        (``RecoveryFile.running_every``)."""
        key = tuple((r.id, r.label) for r in f.runs)
        if key != self._recovery_key:
            self._recovery_key = key
            self._recovery = None

            def ok(runs):
                if self._recovery_key == key:
                    self._recovery = runs
                    self._write_recovery(f.step)
            self.bridge.call(compare_edits.recovery_runs, on_ok=ok, on_error=lambda *_: None)
            return
        if self._recovery is not None and not (f.running and time.monotonic() - self._written_at
                                               < self.recovery.running_every()):
            self._write_recovery(f.step)

    def _write_recovery(self, step: int) -> None:
        item = (self._recovery, max(step, self._floor))
        if self._written is not None and self._written[0] is item[0] and self._written[1] == item[1]:
            return  # by identity: RunSpecs hold tensors, whose == is elementwise
        self._written, self._written_at = item, time.monotonic()
        runs, step = item
        self.recovery.write(lambda: compare_recovery.to_json(runs, step),
                            {k: v for rs in runs for k, v in rs.blobs.items()})

    def open_recovered(self, path) -> None:
        """Rebuild the comparison a window left when its process ended, and step it in lockstep
        to where it stood (the file goes once it is built: this window keeps its own)."""
        name = Path(path).name

        def built(spec):
            self._took(spec)

            def go(n):
                if n:
                    self.bridge.runner.step(n)
                Path(path).unlink(missing_ok=True)
                self._floor = spec.start_step + n  # written as the step until the replay is there
                self._say("Recovered the comparison optimlab had open when it ended"
                          + (f", stepping again {n:,} lockstep steps" if n else ""))
            self.bridge.call(compare_edits.steps_to_recover, on_ok=go, on_error=lambda *_: None)
        self.bridge.replace(compare_edits.open_recovery, str(path), on_ok=built,
                            on_error=lambda m, tb: self.show_error(m, name))

    @Slot(int)
    def ask_export(self, run_id: int) -> None:
        """Ask where to write run ``run_id`` as a plain PyTorch script, then write it."""
        label = next((r.label for r in self.frame.runs if r.id == run_id), "run") if self.frame else "run"
        stem = "".join(c if c.isalnum() else "_" for c in label.split(" ")[0]).strip("_") or "run"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {label} as a PyTorch script", f"{stem.lower()}_run.py",
                                              "Python scripts (*.py)")
        if path:
            self.export_run(run_id, path)

    def export_run(self, run_id: int, path: str) -> None:
        def ok(written):
            self._say("Wrote " + ", ".join(Path(p).name for p in written))
        self.bridge.call(compare_edits.export_run, run_id, path, on_ok=ok,
                         on_error=lambda msg, _tb: self.show_error(msg, about=Path(path).name))

    @Slot(int, str, tuple)
    def explain(self, position: int, tensor: str, index: tuple, step: int | None = None) -> None:
        """Explain the update of ``tensor[index]`` by the run at ``position`` at ``step`` (default:
        the step it stands at), while paused, in the Explain dialog (as the main window does)."""
        f = self.frame
        if f is None or position >= len(f.runs):
            return
        if f.running or f.batch_total:
            self.show_error("Pause the comparison to explain an update")
            return
        run = f.runs[position]
        from .explain_dialog import ExplainDialog
        dlg = self.explain_dialog
        if dlg is None:
            dlg = self.explain_dialog = ExplainDialog(self)
            dlg.show_branch = False
            dlg.requested.connect(lambda n, i, k: self.explain(dlg.position, n, i, k))
        dlg.position = position
        dlg.setWindowTitle(f"Explain one update · {run.label}")
        step = run.snapshot.step if step is None else step
        dlg.ask(tensor, index, step)
        dlg.show()
        dlg.raise_()
        dlg.request(self.bridge, compare_edits.explain_run, run.id, tensor, index, max(1, step))

    @Slot()
    def recover(self) -> None:
        """The runner process ended: the same configurations in a new one, stepped to where the
        comparison stood (each run is the same run alone: the same values)."""
        if self._recovery is None or self.frame is None:
            return
        runs, step = self._recovery, self.frame.step  # the dead runner's last frame stays: its step
        start = runs[0].spec.start_step
        self.recover_button.hide()
        self._recovery_key = None

        def built(spec):
            self._took(spec)
            if step > start:
                self.bridge.runner.step(step - start)
            self._say(f"Recovered: {len(runs)} configurations, stepping again to step {step:,}")
        self.bridge.replace(compare_edits.build, list(runs), on_ok=built, on_error=self._failed)

    def closeEvent(self, event) -> None:
        if self.dirty and not self.confirm_discard():
            event.ignore()
            return
        if self.explain_dialog is not None:
            self.explain_dialog.close()  # it asks this window's runner: it goes with the window
        self.bridge.shutdown()
        self.recovery.forget()
        event.accept()

