"""The optimizer's state_dict as a tree, like the PyTorch walkthrough prints it.

Top level: ``defaults``, ``state`` (one item per parameter index with state) and
``param_groups`` (hyperparameters plus ``params`` as indices). Updates edit item
texts in place, so expansion and selection survive 30 Hz refreshes.
"""
from __future__ import annotations

import re

import numpy as np
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QMenu, QTreeWidget, QTreeWidgetItem, QWidget

from core.snapshot import ArrayView, Snapshot

_ID = Qt.ItemDataRole.UserRole  # path component of an item ("state", "0", "lr", ...)
_SUMMARY = 16  # exact tensors with more elements print with "..." like torch
_WS = re.compile(r"\s*\n\s*")


def _num(x: object) -> str:
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e16:
            return f"{x:.1f}"
        return f"{x:.6g}"
    return str(x)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def format_array(a: ArrayView) -> str:
    """Compact one-line text for a tensor: values when small, statistics when not."""
    if a.is_scalar:
        v = np.asarray(a.values)
        return _num(v.reshape(-1)[0].item() if v.size else a.mean)
    dtype = "" if a.dtype in ("float32", "torch.float32") else f" {a.dtype.removeprefix('torch.')}"
    if not a.exact:
        return (f"tensor {_shape(a.shape)}{dtype} min {a.min:.4g} max {a.max:.4g} "
                f"mean {a.mean:.4g}")
    text = np.array2string(np.asarray(a.values), precision=4, floatmode="fixed", separator=", ",
                           threshold=_SUMMARY, edgeitems=2, max_line_width=1 << 30)
    return f"tensor {_shape(a.shape)}{dtype} {_WS.sub(' ', text)}"


def format_value(v: object) -> str:
    """Text for one state or hyperparameter value (Python repr style, tensors compact)."""
    if isinstance(v, ArrayView):
        return format_array(v)
    if isinstance(v, (float, np.generic)):
        return _num(v) if isinstance(v, np.generic) else repr(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(format_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    return str(v)


def _tooltip(v: object) -> str | None:
    if isinstance(v, ArrayView) and not v.is_scalar:
        kind = "exact" if v.exact else "preview"
        return (f"{_shape(v.shape)} {v.dtype} ({kind})\nmin {v.min:.6g}  max {v.max:.6g}\n"
                f"mean {v.mean:.6g}  norm {v.norm:.6g}")
    return None


# an entry: (id, key text, value text, tooltip, children or None)
_Entry = tuple[str, str, str, "str | None", "list | None"]


def _entries(s: Snapshot) -> list[_Entry]:
    defaults = [(k, k, format_value(v), None, None) for k, v in s.defaults.items()]
    state = []
    for t in sorted(s.tensors, key=lambda t: t.index):
        if t.state:
            kids = [(k, k, format_value(v), _tooltip(v), None) for k, v in t.state.items()]
            state.append((str(t.index), f"{t.index} ({t.name})", "", None, kids))
    groups = []
    for g in s.groups:
        kids = [(k, k, format_value(v), None, None) for k, v in g.hparams.items()]
        kids.append(("params", "params", "[" + ", ".join(map(str, g.params)) + "]",
                     ", ".join(g.names) or None, None))
        groups.append((str(g.index), str(g.index), "", None, kids))
    n = len(groups)
    return [("defaults", "defaults", "", None, defaults),
            ("state", "state", "" if state else "{}", None, state),
            ("param_groups", "param_groups", f"{n} group{'s' if n != 1 else ''}", None, groups)]


class StateTree(QTreeWidget):
    """A read-only tree of defaults, per-parameter state and param_groups."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setColumnCount(2)
        self.setHeaderLabels(["key", "value"])
        self.setUniformRowHeights(True)  # cheap layout at 30 Hz
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setColumnWidth(0, 140)
        self._seq: int | None = None
        self._copy = QAction("Copy", self)
        self._copy.setShortcut(QKeySequence.StandardKey.Copy)
        self._copy.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self._copy.triggered.connect(self.copySelection)
        self.addAction(self._copy)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)

    # ---- public API --------------------------------------------------------
    def setSnapshot(self, s: Snapshot | None) -> None:
        """Show ``s``; a snapshot already shown (same ``seq``) costs nothing."""
        if s is None:
            self.clear()
            self._seq = None
            return
        if s.seq == self._seq and self.topLevelItemCount():
            return
        self._seq = s.seq
        first = self.topLevelItemCount() == 0
        changed = self._sync(self.invisibleRootItem(), _entries(s))
        if changed:
            self.resizeColumnToContents(0)
            if first:  # keys like "weight_decay" and "momentum_buffer" must stay readable
                self.setColumnWidth(0, min(self.columnWidth(0), max(190, self.width() // 2)))

    def text_of(self, path: tuple[str, ...]) -> str:
        """Text of the item at ``path``, e.g. ("state", "0", "momentum_buffer") -> "key: value"."""
        return self._text(self._find(path))

    def itemAtPath(self, path: tuple[str, ...]) -> QTreeWidgetItem:
        """The item at ``path`` (KeyError if absent); for selection and tests."""
        return self._find(path)

    def copySelection(self) -> None:
        """Put the selected item's "key: value" text on the clipboard."""
        item = self.currentItem()
        if item is not None:
            QGuiApplication.clipboard().setText(self._text(item))

    # ---- internals ---------------------------------------------------------
    @staticmethod
    def _text(item: QTreeWidgetItem) -> str:
        key, value = item.text(0), item.text(1)
        return f"{key}: {value}" if value else key

    def _find(self, path: tuple[str, ...]) -> QTreeWidgetItem:
        item = self.invisibleRootItem()
        for part in path:
            for i in range(item.childCount()):
                if item.child(i).data(0, _ID) == part:
                    item = item.child(i)
                    break
            else:
                raise KeyError(path)
        return item

    def _sync(self, parent: QTreeWidgetItem, entries: list[_Entry]) -> bool:
        """Make ``parent``'s children match ``entries``, reusing items by id.

        Returns True when items were added, removed or moved.
        """
        changed = False
        existing = {parent.child(i).data(0, _ID): parent.child(i)
                    for i in range(parent.childCount())}
        wanted = {e[0] for e in entries}
        for id_, item in existing.items():
            if id_ not in wanted:
                parent.removeChild(item)
                changed = True
        for i, (id_, key, value, tip, kids) in enumerate(entries):
            item = existing.get(id_)
            new = item is None
            if new:
                item = QTreeWidgetItem()
                item.setData(0, _ID, id_)
                parent.insertChild(i, item)
                changed = True
            elif parent.indexOfChild(item) != i:
                expanded = _expanded(item)
                parent.insertChild(i, parent.takeChild(parent.indexOfChild(item)))
                _restore(expanded)
                changed = True
            _set(item, 0, key, None)
            _set(item, 1, value, tip)
            if kids is not None:
                changed |= self._sync(item, kids)
                if new:
                    item.setExpanded(True)
        return changed

    def _menu(self, pos: QPoint) -> None:
        item = self.itemAt(pos)
        if item is None:
            return
        self.setCurrentItem(item)
        menu = QMenu(self)
        menu.addAction(self._copy)
        menu.exec(self.viewport().mapToGlobal(pos))


def _set(item: QTreeWidgetItem, col: int, text: str, tip: str | None) -> None:
    # setText with an unchanged text still repaints; compare first
    if item.text(col) != text:
        item.setText(col, text)
    tip = tip or (text if col == 1 and len(text) > 40 else "")
    if item.toolTip(col) != tip:
        item.setToolTip(col, tip)


def _expanded(item: QTreeWidgetItem) -> list[tuple[QTreeWidgetItem, bool]]:
    out = [(item, item.isExpanded())]
    for i in range(item.childCount()):
        out += _expanded(item.child(i))
    return out


def _restore(states: list[tuple[QTreeWidgetItem, bool]]) -> None:
    for it, exp in states:
        it.setExpanded(exp)
