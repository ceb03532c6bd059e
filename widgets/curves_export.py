"""Saving what the Curves dock shows: the series as CSV, the plots as PNG (atomic writes).

Mixed into ``CurvesView`` (needs ``_history``, ``graphics`` and ``hover``).
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QFileDialog


def atomic_write(path, write) -> None:
    """``write(fileobj)`` to a temp file beside ``path``, flushed and fsynced, then moved over it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def series_columns(h) -> dict[str, np.ndarray]:
    """The columns a CSV export writes, in order (a bucket's min and max where a point stands
    for several steps)."""
    cols = {"step": h.step, "loss": h.loss, "grad_norm": h.grad_norm, "update_norm": h.update_norm}
    if h.bucket > 1:
        for name in ("loss", "grad_norm", "update_norm"):
            for end in ("min", "max"):
                v = getattr(h, f"{name}_{end}")
                if v is not None:
                    cols[f"{name}_{end}"] = v
    if h.val_loss is not None and len(h.val_loss) and np.isfinite(h.val_loss).any():
        cols["val_loss"] = h.val_loss
        if h.val_accuracy is not None:
            cols["val_accuracy"] = h.val_accuracy
    for g, s in enumerate(h.lr):
        cols[f"lr_group_{g}"] = s
    for g, s in enumerate(h.update_ratio):
        cols[f"update_ratio_group_{g}"] = s
    return cols


class CurvesExport:
    """Export as CSV or PNG, from the dock's Export menu or called directly."""

    def exportCsv(self, path) -> None:
        """The series as CSV: one row per recorded point, an empty cell where there is no value."""
        h = self._history
        cols = series_columns(h)
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(list(cols))
        arrays = [np.asarray(v, dtype=np.float64) for v in cols.values()]
        for i in range(len(h.step)):
            row = []
            for k, a in zip(cols, arrays):
                v = float(a[i])
                row.append("" if v != v else str(int(v)) if k == "step" else repr(v))
            out.writerow(row)
        data = buf.getvalue().encode()
        atomic_write(path, lambda f: f.write(data))

    def exportPng(self, path) -> None:
        """The plots as drawn now, as a PNG."""
        image = self.graphics.grab()

        def write(f):
            from PySide6.QtCore import QBuffer, QByteArray, QIODevice
            raw = QByteArray()
            buf = QBuffer(raw)
            buf.open(QIODevice.OpenModeFlag.WriteOnly)
            if not image.save(buf, "PNG"):
                raise OSError(f"Could not encode {Path(path).name} as PNG")
            f.write(bytes(raw.data()))
        atomic_write(path, write)

    def _ask_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the series", "curves.csv", "CSV (*.csv)")
        if path:
            self._export(self.exportCsv, path)

    def _ask_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the plots", "curves.png", "PNG (*.png)")
        if path:
            self._export(self.exportPng, path)

    def _export(self, fn, path) -> None:
        try:
            fn(path)
        except OSError as e:
            self.hover.setText(f"<span style='color: #d32f2f'>Could not write {Path(path).name}: "
                               f"{e.strerror or e}</span>")
        else:
            self.hover.setText(f"<span style='color: grey'>wrote {Path(path).name}</span>")
