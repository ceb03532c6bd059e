"""The Landscape dock in the window: the current objective's map, its path, and a click that
restarts the run from where it lands.

Mixed into MainWindow (needs ``bridge``, ``spec``, ``landscape``, ``replace_session``, ``_mark``).
The map is computed on the runner (torch work); an answer for an objective the session has
left meanwhile is dropped.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Slot

from core import edits


class LandscapeUI:
    """Draws the landscape from snapshots; turns clicks into a new start point."""

    def _draw_landscape(self, s) -> None:
        """The current objective's map and path, or a sentence saying why there is none."""
        path = s.path if s.path is not None else self._objective_point(s)
        if s.objective is None or path is None:
            if self._landscape_key != "none" or not self.landscape.message.text():
                self._landscape_key = "none"
                n = sum(t.value.numel for t in s.tensors)
                self.landscape.setMessage(
                    f"No landscape: the {s.objective} objective here takes {n} numbers; the map is drawn "
                    "for 2." if s.objective is not None else
                    "No landscape: it is drawn for an objective of 2 numbers (Problem › gradient source › "
                    "objective; the adam_rosenbrock example has one).")
            return
        key = (s.objective, self.spec.gradient.condition)
        if key != self._landscape_key:
            self._landscape_key = key

            def draw(grid, key=key):
                if key == self._landscape_key:  # an answer for an objective left meanwhile is dropped
                    self.landscape.setLandscape(*grid)
            # torch work belongs on the runner thread (torch's thread pool spins per calling thread)
            self.bridge.call(edits.landscape, *key, on_ok=draw)
        self.landscape.setPath(path)

    def _objective_point(self, s):
        """Before the first step there is no path yet: the start point, if the objective takes 2 numbers."""
        if s.objective is None:
            return None
        names = set(self.spec.gradient.tensors) or {t.name for t in s.tensors}
        parts = [t.value for t in s.tensors if t.name in names]
        if sum(v.numel for v in parts) != 2 or not all(v.exact for v in parts):
            return None
        return np.concatenate([np.asarray(v.values, dtype=np.float64).reshape(-1) for v in parts]).reshape(1, 2)

    @Slot(float, float)
    def on_start_point(self, x: float, y: float) -> None:
        """A click on the landscape: the run restarts from (x, y)."""
        def ok():
            self._mark()
            self.statusBar().showMessage(f"Start point ({x:.4g}, {y:.4g}): the run restarts from step 0", 5000)
        self.replace_session(edits.with_start_point, x, y, on_ok=ok, fail_title="Cannot start there")
