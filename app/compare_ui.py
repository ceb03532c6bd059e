"""The Compare menu of the main window: a comparison of the current configuration, or of a
branch of the timeline promoted into one; each opens a Compare window with its own runner.

Mixed into MainWindow (needs ``bridge``, ``spec``, ``snapshot``, ``show_error``).
"""
from __future__ import annotations

from PySide6.QtWidgets import QInputDialog

from core import compare_edits
from core.compare import RunSpec

from core.runner import Runner

from .compare_window import CompareWindow
from .file_ops import add_action


class CompareUI:
    """Opens Compare windows and closes them with the main window."""

    def build_compare_menu(self, menu) -> None:
        self.compare_windows: list[CompareWindow] = []
        self.compare_process: bool | None = None  # None: a runner of the main window's kind
        add_action(self, menu, "Compare this configuration with…", self.compare_current)
        add_action(self, menu, "Promote a branch into a comparison…", self._ask_branch)
        add_action(self, menu, "Open comparison…", self._open_comparison)

    def _compare_window(self, runs=(), path=None, recovered=None) -> CompareWindow:
        """A Compare window whose runner is of the main window's kind (a process, in the app)."""
        process = getattr(self, "compare_process", None)
        if process is None:
            process = not isinstance(self.bridge.runner, Runner)
        return CompareWindow(runs, path=path, process=process, recovered=recovered)

    def reopen_comparison(self, path) -> CompareWindow:
        """A comparison a Compare window left when optimlab's process ended (``app.recovery_ui``)."""
        return self._show_compare(self._compare_window(recovered=path))

    def _show_compare(self, w: CompareWindow) -> CompareWindow:
        self.compare_windows = [x for x in self.compare_windows if x.isVisible()]
        self.compare_windows.append(w)
        w.show()
        return w

    def compare_current(self) -> CompareWindow | None:
        """The current configuration from its first step beside a second one (add more in the
        window). A resumed session's spec needs the checkpoint's data, which the runner holds:
        it is asked for it first (the window opens when it answers)."""
        if self.spec.resume is None:
            return self._show_compare(self._compare_window([RunSpec("", self.spec)]))
        self.bridge.call(compare_edits.current_run,
                         on_ok=lambda rs: self._show_compare(self._compare_window([rs])),
                         on_error=lambda m, tb: self.show_error("Cannot compare this configuration", m, tb))
        return None

    def promote_branch(self, branch: int) -> None:
        """Branch ``branch`` (its spec and its edits at their steps) as the first run of a comparison."""
        self.bridge.call(compare_edits.branch_run, branch,
                         on_ok=lambda rs: self._show_compare(self._compare_window([rs])),
                         on_error=lambda m, tb: self.show_error("Cannot compare that branch", m, tb))

    def _ask_branch(self) -> None:
        branches = self.snapshot.branches if self.snapshot is not None else ()
        items = [f"{b.id}: {b.optimizer}, {b.steps:,} steps{' (current)' if b.current else ''}" for b in branches]
        if not items:
            self.show_error("Nothing to compare", "There is no branch yet")
            return
        item, ok = QInputDialog.getItem(self, "Promote a branch", "Branch", items, 0, False)
        if ok:
            self.promote_branch(branches[items.index(item)].id)

    def _open_comparison(self) -> None:
        from PySide6.QtWidgets import QFileDialog
        from core.compare_file import EXT
        path, _ = QFileDialog.getOpenFileName(self, "Open comparison", "", f"Comparisons (*{EXT})")
        if path:
            self._show_compare(self._compare_window(path=path))

    def close_comparisons(self) -> bool:
        """Close every Compare window (each asks about an unsaved comparison); False if one
        stays open (Cancel), and the main window with it."""
        for w in list(getattr(self, "compare_windows", [])):
            if w.isVisible() and not w.close():
                return False
        self.compare_windows = []
        return True
