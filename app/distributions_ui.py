"""The tensor panel's "over time" view: the shown tensor's value, gradient and every state
entry as distributions over the steps (``widgets.density_strip``), fetched from the runner.

Mixed into MainWindow (needs ``bridge``, ``snapshot``, ``tensor_panel`` and ``_draw_tensor``).
The histograms are counted on the runner at the measured steps (``core.distributions``); the
window only asks for them with ``core.edits.distributions``: while the view is on, at most
once per frame that moved the session (a step, a rewind, another branch or tensor), one
request in flight.

"measure every step" (the panel's button while over time, and View > Measure the skipped
steps) replays the branch's unmeasured steps on the runner (``core.edits.measure_skipped``,
in slices: ``app.measure_slices``) and fills their histograms and norms; the strips and curves
are drawn again afterwards.
"""
from __future__ import annotations

from core import edits

from .measure_slices import MeasureInSlices


class DistributionsUI:
    """Feeds the tensor panel's density strips."""

    def build_distributions(self) -> None:
        self._dist_asked = None  # (run, branch, step, tensor, entries) last asked for
        self._dist_busy = False  # a request in flight: the next waits for its answer
        self._dist_again = False
        self._measure = MeasureInSlices(
            self.bridge, edits.measure_skipped, running=lambda: self.snapshot is not None and self.snapshot.running,
            say=lambda text, ms: self.statusBar().showMessage(text, ms), busy=self.tensor_panel.setMeasuring,
            redraw=lambda: self.draw_distributions(force=True))
        self.tensor_panel.overTimeChanged.connect(self._on_over_time)
        self.tensor_panel.measureRequested.connect(self.measure_skipped)

    def measure_skipped(self) -> None:
        """Replay and measure the steps the run left unmeasured (``app.measure_slices``)."""
        if self.snapshot is not None or self._measure.active:
            self._measure.toggle()

    @property
    def _measuring(self) -> bool:
        return self._measure.active

    def _on_over_time(self, on: bool) -> None:
        if on:
            self.draw_distributions(force=True)
        else:
            self._draw_tensor()  # the views were not redrawn while under their strips

    def draw_distributions(self, force: bool = False) -> None:
        """Ask for the shown tensor's distributions if the view is on and they may have changed."""
        s, panel = self.snapshot, self.tensor_panel
        if s is None or not panel.overTime() or not panel.tensorName():
            return
        name, entries = panel.tensorName(), tuple(panel.views())
        key = (s.run_id, s.branch, s.step, name, entries)
        if key == self._dist_asked and not force:
            return
        if self._dist_busy:
            self._dist_again = True
            return
        self._dist_asked, self._dist_busy = key, True

        def done(dists):
            self._dist_busy = False
            if dists is not None:
                self.tensor_panel.setDistributions(name, dists)
            if self._dist_again:
                self._dist_again = False
                self.draw_distributions()
        # a refusal only means the tensor went away meanwhile (a rebuild): the next frame asks again
        self.bridge.call(edits.distributions, name, entries, on_ok=done, on_error=lambda *_: done(None))
