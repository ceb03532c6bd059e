"""File > Attach to a running script: a window on a script that calls ``optimlab.watch``.

The frames are the same Snapshots the app's own runner publishes, drawn by the same widgets
(tensor heatmaps, curves, state tree). The window polls the listener's latest frame on a
timer, as the main window polls its runner; Pause, Step and Resume go to the script over its
control socket, and their answers come back to the GUI thread as queued signals, so nothing
here waits on the script.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QInputDialog, QLabel, QMainWindow,
                               QPushButton, QSpinBox, QSplitter, QVBoxLayout, QWidget)

from core import channel
from core.listen import Listener
from widgets.curves import CurvesView
from widgets.state_tree import StateTree
from widgets.status import format_status
from widgets.tensor_panel import TensorPanel

from .layout import fit_screen

FRAME_MS = 25
ALIVE_EVERY = 40  # polls between checks that the script is still there (about a second)


class _Replies(QObject):
    """Carries control answers from the listener's thread to the GUI thread."""

    done = Signal(str, object)  # (request, reply dict or error text)


class AttachWindow(QMainWindow):
    """The frames of one watched script, with Pause / Step N / Resume."""

    def __init__(self, address: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.listener = Listener(address)  # ChannelError: the caller shows the sentence
        self.setWindowTitle(f"optimlab: attached to {self.listener.endpoint.name}")
        self.snapshot = None
        self.ended = False
        self._polls = 0
        self.last_reply: dict | str | None = None
        self._replies = _Replies(self)
        self._replies.done.connect(self._on_reply, Qt.ConnectionType.QueuedConnection)
        self.pause_button = QPushButton("Pause")
        self.step_button = QPushButton("Step")
        self.step_count = QSpinBox()
        self.step_count.setRange(1, 1_000_000)
        self.resume_button = QPushButton("Resume")
        self.pause_button.clicked.connect(partial(self.control, "pause"))
        self.step_button.clicked.connect(lambda: self.control("step", n=self.step_count.value()))
        self.resume_button.clicked.connect(partial(self.control, "resume"))
        self.tensor_combo = QComboBox()
        self.tensor_combo.currentTextChanged.connect(self._draw_tensor)
        self.tensor_panel = TensorPanel()
        self.tensor_panel.offerOverTime(False)  # no timeline here: nothing to draw over time
        self.tensor_panel.setReadOnly("a watched script's values are read here, not edited")
        self.curves = CurvesView()
        self.state_tree = StateTree()
        self.status = QLabel("waiting for the first frame…")
        bar = QHBoxLayout()
        for w in (self.pause_button, self.step_button, self.step_count, self.resume_button, self.tensor_combo):
            bar.addWidget(w)
        bar.addStretch(1)
        left = QWidget()
        lay = QVBoxLayout(left)
        lay.addLayout(bar)
        lay.addWidget(self.tensor_panel, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.curves)
        split.addWidget(self.state_tree)
        main = QSplitter()
        main.addWidget(left)
        main.addWidget(split)
        main.setStretchFactor(0, 3)
        main.setStretchFactor(1, 2)
        self.setCentralWidget(main)
        self.statusBar().addPermanentWidget(self.status)
        self.timer = QTimer(self)
        self.timer.setInterval(FRAME_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        fit_screen(self, 1200, 760)

    @Slot()
    def poll(self) -> None:
        self._polls += 1
        if self._polls % ALIVE_EVERY == 0 and not self.ended and not channel.alive(self.listener.endpoint):
            self._end()
        f = self.listener.latest()
        if f is None or f is self.snapshot:
            return
        self.snapshot = f
        names = [t.name for t in f.tensors]
        if names != [self.tensor_combo.itemText(i) for i in range(self.tensor_combo.count())]:
            current = self.tensor_combo.currentText()
            self.tensor_combo.blockSignals(True)
            self.tensor_combo.clear()
            self.tensor_combo.addItems(names)
            self.tensor_combo.setCurrentText(current if current in names else (names[0] if names else ""))
            self.tensor_combo.blockSignals(False)
        self._draw_tensor()
        self.curves.setHistory(f.history, live=f.running)
        self.state_tree.setSnapshot(f)
        self.status.setText(f"{f.run_id} · {f.optimizer} · "
                            + format_status(f.step, f.loss, f.steps_per_second, f.device, running=f.running))

    def _end(self) -> None:
        """The script has ended (or crashed): its last frame stays on screen, the controls go."""
        self.ended = True
        for b in (self.pause_button, self.step_button, self.step_count, self.resume_button):
            b.setEnabled(False)
        self.statusBar().showMessage(f"{self.listener.endpoint.name} has ended; its last frame is shown")
        self.setWindowTitle(self.windowTitle() + " (ended)")

    def _draw_tensor(self, *_) -> None:
        if self.snapshot is not None:
            self.tensor_panel.setTensor(self.snapshot.tensor(self.tensor_combo.currentText()))

    def control(self, op: str, **args) -> None:
        """Send pause / step / resume; the answer arrives later as a signal."""
        fut = self.listener.request(op, **args)
        replies = self._replies

        def answered(f, op=op):
            if f.cancelled():  # the window closed first: no one to tell
                return
            try:
                replies.done.emit(op, f.result() if f.exception() is None else str(f.exception()))
            except RuntimeError:  # the window (and its signal carrier) is already deleted
                pass
        fut.add_done_callback(answered)

    @Slot(str, object)
    def _on_reply(self, op: str, reply) -> None:
        self.last_reply = reply
        if isinstance(reply, str) or not reply.get("ok"):
            why = reply if isinstance(reply, str) else reply.get("error")
            self.statusBar().showMessage(f"{op} refused: {why}")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.timer.stop()
        self.listener.close()  # the script resumes if it was paused for us alone
        super().closeEvent(event)


def attach_label(ep, info: dict) -> str:
    """One running script as the attach list shows it: ``train.py: Sequential (pid 28662,
    Adam) · <address>`` (the address last: it is what is attached to)."""
    name = info.get("name", ep.name)
    script = info.get("script") or ""
    who = f"{script}: {name}" if script and script != name else name
    return f"{who} (pid {info.get('pid')}, {info.get('optimizer', '?')}) · {ep.base}"


def choose_address(parent: QWidget) -> str | None:
    """Ask which running script to attach to (the newest first), or for a typed address."""
    found = channel.running()
    items = [attach_label(ep, info) for ep, info in found]
    if not items:
        text, ok = QInputDialog.getText(parent, "Attach to a running script",
                                        "No watched script is running here. Its address (a socket path):")
        return text.strip() if ok and text.strip() else None
    item, ok = QInputDialog.getItem(parent, "Attach to a running script", "Script:", items, 0, True)
    if not ok or not item:
        return None
    return item.rsplit(" · ", 1)[-1].strip()


def open_attached(owner: QWidget, address: str | None) -> AttachWindow | None:
    """Open an AttachWindow (kept alive on ``owner``); a refusal is one sentence in a message box."""
    try:
        ep = channel.resolve(address)
        if not Path(f"{ep.base}.frames").exists():  # zmq would connect and wait for it forever
            raise channel.ChannelError(f"No watched script is running at {ep.base} (has it ended?)")
        w = AttachWindow(str(ep.base))
    except (channel.ChannelError, OSError) as e:
        from .checkpoint_view import refuse
        refuse(owner, "Cannot attach", str(e))
        return None
    windows = owner.__dict__.setdefault("_real_runs_windows", [])
    windows.append(w)
    w.destroyed.connect(lambda *_: windows.remove(w) if w in windows else None)
    w.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    w.show()
    return w
