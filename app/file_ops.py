"""File menu, recent files, drag and drop, and the unsaved-changes question.

Every read and write runs on the runner thread (it touches the live session). A
file that does not fit is refused with a message naming the mismatch; the
session stays exactly as it was.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog

from core import edits, files, session_file
from core.cli import example_paths

from . import startup_probe
from .messages import save_first
from .new_dialog import NewSessionDialog

RECENT_MAX = 8
SESSION_FILTER = "optimlab sessions (*.optimlab *.json)"
TORCH_FILTER = "torch.save files (*.pt *.pth *.pkl)"
SCRIPT_FILTER = "Python scripts (*.py)"
OPEN_FILTER = f"Sessions and state_dicts (*.optimlab *.json *.pt *.pth *.pkl);;{SESSION_FILTER};;{TORCH_FILTER}"


def add_action(owner, menu, text: str, slot, shortcut: str | None = None) -> QAction:
    """A menu entry with an optional shortcut (window-wide, so it works from any dock)."""
    a = QAction(text, owner)
    if shortcut:
        a.setShortcut(QKeySequence(shortcut))
    a.triggered.connect(slot)
    menu.addAction(a)
    return a


class FileOps:
    """Mixed into MainWindow: needs ``bridge``, ``settings``, ``show_error`` and ``replace_session``."""

    def init_files(self) -> None:
        self.path: Path | None = None  # where Save (Ctrl+S) writes; None: it asks, as Save As does
        self.doc_name = "untitled"  # what the title calls the session
        self.dirty = False

    def set_dirty(self, dirty: bool) -> None:
        self.dirty = dirty
        self.setWindowTitle(f"{self.doc_name}{' *' if dirty else ''} — optimlab")

    def _set_document(self, path: Path | None, name: str) -> None:
        """The session now belongs to ``path`` (None: untitled or an example) and is saved."""
        self.path = path
        self.doc_name = name
        self.set_dirty(False)

    def build_file_menu(self, menu) -> None:
        def act(text, slot, shortcut=None):
            return add_action(self, menu, text, slot, shortcut)
        act("New…", self.new_dialog, "Ctrl+N")
        act("Open…", self.open_dialog, "Ctrl+O")
        examples = menu.addMenu("Open example")
        for name in example_paths():
            a = QAction(name, self)
            a.triggered.connect(partial(self.open_example, name))
            examples.addAction(a)
        act("Open training script…", self.open_script_dialog)
        from .checkpoint_view import add_real_runs_actions  # issue 13: attach, open checkpoints
        add_real_runs_actions(self, menu, add_action)
        self.recent_menu = menu.addMenu("Open recent")
        self._fill_recent()
        menu.addSeparator()
        act("Save session", self.save_session, "Ctrl+S")
        act("Save session as…", self.save_session_as)
        act("Save optimizer state_dict…", self.save_optimizer_dialog, "Ctrl+Shift+S")
        act("Save parameters…", partial(self._save_dialog, files.save_params, "parameters"))
        act("Save checkpoint (both)…", partial(self._save_dialog, files.save_checkpoint, "checkpoint"))
        act("Export as PyTorch script…", self.export_script_dialog)
        menu.addSeparator()
        act("Load optimizer state_dict…", partial(self._load_dialog, "optimizer"))
        act("Load parameters…", partial(self._load_dialog, "params"))
        menu.addSeparator()
        act("Quit", self.close, "Ctrl+Q")

    # ----- recent files -----

    def recent(self) -> list[str]:
        v = self.settings.value("recent", [])
        if isinstance(v, str):
            v = [v]
        return [p for p in (v or []) if Path(p).exists()]

    def _remember(self, path) -> None:
        p = str(Path(path).resolve())
        items = [p] + [x for x in self.recent() if x != p]
        self.settings.setValue("recent", items[:RECENT_MAX])
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.recent():
            a = QAction(p, self)
            a.triggered.connect(partial(self.open_path, p))
            self.recent_menu.addAction(a)
        self.recent_menu.setEnabled(bool(self.recent()))

    # ----- opening -----

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open", "", OPEN_FILTER)
        if path:
            self.open_path(path)

    def open_example(self, name: str) -> None:
        self.open_path(example_paths()[name], remember=False, example=name)

    def open_path(self, path, remember: bool = True, example: str | None = None,
                  on_ok=None, on_fail=None) -> None:
        """Open a session (.optimlab/.json) or load a torch.save file into the current session.

        A shipped ``example`` opens untitled (Save asks where, never over the example)."""
        path = Path(path)
        if path.suffix in files.EXTENSIONS:
            self.load_torch_file(path, remember)
            return
        if self.dirty and not self.confirm_discard():
            return

        def opened():
            self._set_document(None if example else path, f"{example} (example)" if example else path.name)
            if remember:
                self._remember(path)
            self.statusBar().showMessage(f"Opened {example or path.name}", 5000)
            if on_ok:
                on_ok()

        self.replace_session(edits.open_session, path, on_ok=opened, on_fail=on_fail,
                             fail_title=f"Cannot open {path.name}", about=path.name)

    def open_initial(self, path, example: str | None = None, start_screen: bool = False) -> None:
        """Open what the command line named (built in the runner process). Until it is open the
        window draws nothing of the runner's stand-in session and takes no edits."""
        self._opening = example or Path(path).name
        self._set_editable(False)

        def settled(ok: bool):
            self._opening = None
            self._set_editable(True)
            if not ok:  # the runner kept its stand-in: show that one
                self.spec = edits.blank_spec()
                self.problem.setSpec(self.spec)
                self.sync_training(self.spec)
            self.on_snapshot(self.bridge.latest())
            startup_probe.ready(self)
            if start_screen and self.settings.value("start/show", True, type=bool):
                self.new_dialog()
        self.open_path(path, remember=example is None, example=example,
                       on_ok=lambda: settled(True), on_fail=lambda: settled(False))

    def _set_editable(self, on: bool) -> None:
        for d in (self.controls_dock, self.problem_dock, self.optimizer_dock):
            d.widget().setEnabled(on)
        self.tensor_panel.setPlaceholder("no tensor selected" if on else f"Opening {self._opening}…")

    # ----- new -----

    def new_dialog(self) -> None:
        """File > New…: an empty problem or one of the examples, each with a line and a picture."""
        dlg = NewSessionDialog(self.settings, self)
        dlg.chosen.connect(self._new_chosen)
        dlg.open()
        self.new_session_dialog = dlg  # tests choose in it

    def _new_chosen(self, name: str) -> None:
        if name == NewSessionDialog.EMPTY:
            self.new_session()
        else:
            self.open_example(name)

    def new_session(self) -> None:
        """An empty problem: one 2x2 tensor with a manual gradient of ones, SGD, untitled."""
        if self.dirty and not self.confirm_discard():
            return
        self.replace_session(edits.build, edits.blank_spec(),
                             on_ok=lambda: self._set_document(None, "untitled"))

    def load_torch_file(self, path, remember: bool = True, kind: str | None = None) -> None:
        """Load an optimizer state_dict, parameters, or both, from a torch.save file."""
        def ok(what):
            self.set_dirty(True)
            if remember:
                self._remember(path)
            self.statusBar().showMessage(f"Loaded the {what} from {Path(path).name}", 5000)
        self.bridge.call(edits.load_torch_file, path, kind, on_ok=ok,
                         on_error=lambda msg, tb: self.show_error(f"Cannot load {Path(path).name}", msg, tb,
                                                                  about=Path(path).name))

    def _load_dialog(self, kind: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load", "", TORCH_FILTER)
        if path:
            self.load_torch_file(path, kind=kind)

    # ----- saving -----

    def save_session(self) -> None:
        if self.path is None:
            self.save_session_as()
        else:
            self.save_session_to(self.path)

    def save_session_as(self) -> None:
        path = self._ask_session_path()
        if path:
            self.save_session_to(path)

    def _ask_session_path(self) -> Path | None:
        path, _ = QFileDialog.getSaveFileName(self, "Save session", "session.optimlab", SESSION_FILTER)
        if not path:
            return None
        if not Path(path).suffix:
            path += session_file.SESSION_EXT
        return Path(path)

    def save_session_to(self, path, on_done=None) -> None:
        path = Path(path)

        def ok(_):
            self._set_document(path, path.name)
            self._remember(path)
            self.statusBar().showMessage(f"Saved {path.name}", 5000)
            if on_done:
                on_done()
        self.bridge.call(edits.save_session, path, on_ok=ok,
                         on_error=lambda msg, tb: self.show_error("Cannot save", msg, tb, about=path.name))

    def save_optimizer_dialog(self) -> None:
        self._save_dialog(files.save_optimizer, "optimizer state_dict")

    def _save_dialog(self, fn, what: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, f"Save {what}", f"{what.split()[0]}.pt", TORCH_FILTER)
        if path:
            self.save_torch_to(fn, path)

    def save_torch_to(self, fn, path) -> None:
        self.bridge.call(fn, path, on_ok=lambda _: self.statusBar().showMessage(f"Saved {Path(path).name}", 5000),
                         on_error=lambda msg, tb: self.show_error("Cannot save", msg, tb,
                                                                  about=Path(path).name))

    def export_script_dialog(self) -> None:
        stem = self.path.stem if self.path else "session"
        path, _ = QFileDialog.getSaveFileName(self, "Export as PyTorch script", f"{stem}.py", SCRIPT_FILTER)
        if path:
            self.export_script_to(path if Path(path).suffix else path + ".py")

    def export_script_to(self, path, on_done=None) -> None:
        """Write the current branch as a plain PyTorch script (on the runner: it replays the session)."""
        def ok(written):
            beside = [Path(w).name for w in written[1:]]
            extra = f"; it reads {', '.join(beside)} beside it" if beside else ""
            self.statusBar().showMessage(f"Exported {Path(path).name}{extra}", 5000)
            if on_done:
                on_done(written)
        self.bridge.call(edits.export_script, path, on_ok=ok,
                         on_error=lambda msg, tb: self.show_error("Cannot export", msg))

    # ----- drops and closing -----

    def dragEnterEvent(self, event) -> None:
        urls = event.mimeData().urls()
        if urls and all(u.isLocalFile() for u in urls):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        event.acceptProposedAction()
        # open after the drop has finished: the unsaved-changes question must not run inside it
        QTimer.singleShot(0, partial(self._open_all, paths))

    def _open_all(self, paths) -> None:
        for p in paths:
            self.open_path(p)

    def confirm_discard(self) -> bool:
        """Ask before losing unsaved changes: Save, Discard or Cancel."""
        return save_first(self, "Unsaved changes", "The session has unsaved changes. Save them first?", self._save_now)

    def _save_now(self) -> bool:
        """Save before closing or opening another session; wait for it (the caller needs the answer)."""
        path = self.path or self._ask_session_path()
        if path is None:
            return False
        done = self.bridge.runner.call(edits.save_session, path)
        try:
            done.result(60)
        except Exception as e:  # noqa: BLE001 - shown; the window stays open with its changes
            self.show_error("Cannot save", str(e) or type(e).__name__)
            return False
        self._set_document(path, path.name)
        self._remember(path)
        return True
