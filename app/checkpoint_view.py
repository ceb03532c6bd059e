"""File > Open checkpoint: a checkpoint's optimizer state per parameter name, with the app's heatmaps.

Opening reads only what names, shapes and dtypes need (``core.checkpoints`` is lazy); a
parameter's tensors are read when it is selected, on a worker thread, and arrive as the
same plain TensorSnapshot the app draws for its own sessions.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (QFileDialog, QLabel, QMainWindow, QMessageBox, QPushButton, QSplitter,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from core.checkpoints import CheckpointInfo, TensorRef, open_checkpoint, param_snapshot
from core.paths import LoadError
from widgets.tensor_panel import TensorPanel

from .layout import fit_screen
from .messages import one_sentence


def refuse(owner: QWidget, title: str, text: str, about: str | None = None) -> None:
    """One plain sentence in a message box that does not block (the main window's own, if it has one)."""
    if hasattr(owner, "show_error"):
        owner.show_error(title, text, about=about)
        return
    text, details = one_sentence(text)
    if about and about not in text:
        text = f"{about}: {text}"
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, owner)
    if details:
        box.setDetailedText(details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()


def _norms(param) -> dict:
    """The L2 norm of the parameter and of each state tensor (reads them: worker thread only)."""
    refs = {"value": param.weight, **param.state}
    return {k: v.norm() for k, v in refs.items() if isinstance(v, TensorRef)}


def _load(param, index: int):
    """What the window shows for one parameter: its TensorSnapshot and its norms."""
    return param_snapshot(param, index), _norms(param)


class _Loaded(QObject):
    done = Signal(object, object)  # (key, (TensorSnapshot, norms) or error text)


class CheckpointWindow(QMainWindow):
    """Optimizers and their parameters on the left; the selected one's state as heatmaps."""

    def __init__(self, info: CheckpointInfo, parent: QWidget | None = None, session_window=None):
        super().__init__(parent)
        self.info = info
        self.session_window = session_window  # the main window a "Resume as session" opens in
        self.setWindowTitle(f"optimlab: {info.path} ({info.format})")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="optimlab-checkpoint")
        self._loaded = _Loaded(self)
        self._loaded.done.connect(self._on_loaded, Qt.ConnectionType.QueuedConnection)
        self._wanted = None
        self.norms: dict = {}  # of the parameter shown
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["name", "shape", "dtype", "state"])
        self.tree.currentItemChanged.connect(self._on_select)
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.tensor_panel = TensorPanel()
        self.tensor_panel.offerOverTime(False)  # no timeline here: nothing to draw over time
        self.tensor_panel.setReadOnly("a checkpoint file is read here, not edited")
        self._fill()
        left = QWidget()
        lay = QVBoxLayout(left)
        lay.addWidget(self.tree, 1)
        lay.addWidget(self.notes)
        self.resume_button = QPushButton("Resume as session…")
        self.resume_button.setToolTip("Open this checkpoint in the main window at its step, for the task "
                                      "whose model it holds, and step on from there")
        self.resume_button.setEnabled(session_window is not None and bool(info.optimizers))
        self.resume_button.clicked.connect(self._resume)
        lay.addWidget(self.resume_button)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.tensor_panel)
        split.setStretchFactor(1, 2)
        self.setCentralWidget(split)
        fit_screen(self, 1200, 760)
        split.setSizes([self.width() * 3 // 10, self.width() * 7 // 10])  # the list's names and its header line

    def _fill(self) -> None:
        for oi, o in enumerate(self.info.optimizers):
            # one line across the columns (the name column alone cut "optimizer: AdamW" short)
            text = f"{o.where}: {o.kind} · {len(o.params)} parameters" + (f" · {o.names_from}" if o.names_from else "")
            top = QTreeWidgetItem([text])
            top.setToolTip(0, text)
            self.tree.addTopLevelItem(top)
            top.setFirstColumnSpanned(True)
            for pi, p in enumerate(o.params):
                ref = p.weight or next((v for v in p.state.values() if isinstance(v, TensorRef)), None)
                shape = "" if ref is None else "x".join(map(str, ref.shape)) or "scalar"
                item = QTreeWidgetItem([p.name, shape, "" if ref is None else ref.dtype, ", ".join(p.state)])
                item.setData(0, Qt.ItemDataRole.UserRole, (oi, pi))
                top.addChild(item)
            top.setExpanded(True)
        notes = [f"{k}: {v}" for k, v in self.info.info.items()]
        notes += [f"{w}: {n}" for w, n in self.info.not_loaded]
        if not self.info.optimizers:
            notes.insert(0, "No optimizer state in this checkpoint.")
        self.notes.setText("\n".join(notes))
        for c in range(3):  # name, shape, dtype: as wide as their entries; the state column takes the rest
            self.tree.resizeColumnToContents(c)
        first = self.tree.topLevelItem(0)
        if first is not None and first.childCount():
            self.tree.setCurrentItem(first.child(0))

    @Slot(object, object)
    def _on_select(self, item, _previous=None) -> None:
        key = None if item is None else item.data(0, Qt.ItemDataRole.UserRole)
        if key is None:
            return
        self._wanted = key
        oi, pi = key
        param = self.info.optimizers[oi].params[pi]
        fut = self._pool.submit(_load, param, pi)
        loaded = self._loaded

        def done(f, key=key):
            if not f.cancelled():  # cancelled: the window is closing
                loaded.done.emit(key, f.result() if f.exception() is None else str(f.exception()))
        fut.add_done_callback(done)

    @Slot(object, object)
    def _on_loaded(self, key, result) -> None:
        if key != self._wanted:
            return  # the user moved on
        if isinstance(result, str):
            self.statusBar().showMessage(f"Cannot show it: {one_sentence(result)[0]}")
            self.tensor_panel.setTensor(None)
            return
        snapshot, norms = result
        self.norms = norms
        self.tensor_panel.setTensor(snapshot)
        self.statusBar().showMessage(f"{snapshot.name}: " + ", ".join(f"‖{k}‖ = {v:.6g}" for k, v in norms.items()))

    def _resume(self) -> None:
        from .resume_dialog import ask_and_resume
        ask_and_resume(self.session_window, self.info.path)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().closeEvent(event)


def open_checkpoint_window(owner: QWidget, path) -> CheckpointWindow | None:
    try:
        info = open_checkpoint(path)
    except (LoadError, OSError) as e:
        refuse(owner, "Cannot open this checkpoint", str(e), about=Path(path).name)
        return None
    w = CheckpointWindow(info, session_window=owner if hasattr(owner, "replace_session") else None)
    windows = owner.__dict__.setdefault("_real_runs_windows", [])
    windows.append(w)
    w.destroyed.connect(lambda *_: windows.remove(w) if w in windows else None)
    w.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    w.show()
    return w


def add_real_runs_actions(owner: QWidget, menu, add_action) -> None:
    """File menu entries: attach to a running script, open a checkpoint file or folder, resume one."""
    from .attach import choose_address, open_attached

    def attach():
        address = choose_address(owner)
        if address:
            open_attached(owner, address)

    def open_file():
        path, _ = QFileDialog.getOpenFileName(owner, "Open checkpoint", "",
                                              "Checkpoints (*.pt *.pth *.ckpt *.bin *.safetensors *.tar);;All files (*)")
        if path:
            open_checkpoint_window(owner, path)

    def resume_file():
        from .resume_dialog import ask_and_resume
        path, _ = QFileDialog.getOpenFileName(owner, "Resume checkpoint as session", "",
                                              "Checkpoints (*.pt *.pth *.ckpt *.bin *.tar);;All files (*)")
        if path:
            ask_and_resume(owner, path)

    def open_folder():
        path = QFileDialog.getExistingDirectory(owner, "Open checkpoint folder (Hugging Face, torch.distributed)")
        if path:
            open_checkpoint_window(owner, path)
    add_action(owner, menu, "Attach to a running script…", attach)
    add_action(owner, menu, "Open checkpoint…", open_file)
    add_action(owner, menu, "Open checkpoint folder…", open_folder)
    if hasattr(owner, "replace_session"):
        add_action(owner, menu, "Resume checkpoint as session…", resume_file)
