"""Edit while paused: a value typed into a tensor view's cell (or "fill…") becomes an
``EditTensor`` action on the runner. It is journaled there, so it replays, rewinds and saves
like every other action, and the next step uses it.

Mixed into MainWindow (needs ``bridge``, ``statusBar``, ``show_error`` and ``_mark``).
"""
from __future__ import annotations

from PySide6.QtCore import Slot

from core import edits

WHAT = {"value": "", "grad": ".grad"}


def edit_text(name: str, which: str, index, value: float) -> str:
    """``weight[1, 2] set to 0.5`` / ``weight.exp_avg filled with 0``."""
    target = f"{name}{WHAT.get(which, '.' + which)}"
    if index is None:
        return f"{target} filled with {value:g}"
    return f"{target}[{', '.join(str(i) for i in index)}] set to {value:g}"


class ValueEdits:
    """Sends the tensor panel's edits to the runner; refuses them while the run goes on."""

    @Slot(str, str, object, float)
    def on_value_edited(self, name: str, which: str, index, value: float) -> None:
        s = self.bridge.latest()
        if s is not None and s.running:  # the panel refuses too; a frame may have been late
            self.last_error = "Pause the run to edit values: an edit applies between steps"
            self.statusBar().showMessage(self.last_error, 10_000)
            return
        done = edit_text(name, which, index, value)

        def ok(_):
            self._mark()
            self.statusBar().showMessage(f"{done}; the next step uses it", 10_000)
        self.bridge.call(edits.edit_tensor, name, which, None if index is None else tuple(index), value,
                         on_ok=ok, on_error=lambda msg, tb: self.show_error("Refused", msg, tb))
