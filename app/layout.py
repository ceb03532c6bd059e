"""Where the docks sit: the default layout, the saved one, and room for the tensors.

Mixed into MainWindow (needs ``settings`` and the docks it builds). On a small screen the
window fits the screen, and when it narrows the side docks give up width before the tensors
in the centre do (at 1024x700 the centre had shrunk to about 220 px).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDockWidget, QTabBar, QWidget
from shiboken6 import isValid

LAYOUT_VERSION = 2  # 2: the Branches and Breakpoints docks


def fit_screen(window: QWidget, width: int, height: int) -> None:
    """Size a top-level ``window`` to ``width`` x ``height``, or to its screen's free area where
    that is smaller (at 1024x700 the Compare and checkpoint windows ran off the screen)."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is not None:
        avail = screen.availableGeometry()
        width, height = min(width, avail.width()), min(height, avail.height())
        window.move(avail.topLeft())
    window.resize(width, height)


class WindowLayout:
    """The docks around the tensors."""

    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        d = QDockWidget(title, self)
        d.setObjectName(title.replace(" ", "_").lower())
        d.setWidget(widget)
        d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                      QDockWidget.DockWidgetFeature.DockWidgetFloatable |
                      QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, d)
        return d

    def _default_layout(self) -> None:
        """Controls over Optimizer/Problem on the left, tensors in the middle, curves/state right."""
        L, R = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        for d in self.findChildren(QDockWidget):
            d.setFloating(False)
        self.addDockWidget(L, self.controls_dock)
        self.addDockWidget(L, self.optimizer_dock)
        self.splitDockWidget(self.controls_dock, self.optimizer_dock, Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.optimizer_dock, self.problem_dock)
        self.addDockWidget(R, self.curves_dock)
        self.addDockWidget(R, self.state_dock)
        self.splitDockWidget(self.curves_dock, self.state_dock, Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.state_dock, self.branches_dock)
        self.tabifyDockWidget(self.state_dock, self.breakpoints_dock)
        self.tabifyDockWidget(self.curves_dock, self.landscape_dock)
        self.tabifyDockWidget(self.curves_dock, self.decision_dock)
        for d in self.findChildren(QDockWidget):
            d.show()
        self.optimizer_dock.raise_()
        self.curves_dock.raise_()
        self.state_dock.raise_()
        self.resizeDocks([self.controls_dock, self.curves_dock], [360, 400], Qt.Orientation.Horizontal)
        self.resizeDocks([self.controls_dock, self.optimizer_dock], [190, 560], Qt.Orientation.Vertical)
        self.resizeDocks([self.curves_dock, self.state_dock], [460, 290], Qt.Orientation.Vertical)

    def _fit_screen(self) -> None:
        """No bigger than the screen's free area (a 1024x700 screen gets a 1024x700 window).
        The offscreen platform's 800x600 is no screen a user looks at: left alone there."""
        screen = self.screen()
        if screen is None or QGuiApplication.platformName() == "offscreen":
            return
        avail = screen.availableGeometry()
        if self.width() > avail.width() or self.height() > avail.height():
            self.resize(min(self.width(), avail.width()), min(self.height(), avail.height()))
            self.move(avail.topLeft())

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        if event.size().width() < event.oldSize().width() or event.oldSize().width() < 0:
            QTimer.singleShot(0, self._give_centre_room)

    def childEvent(self, event) -> None:  # noqa: N802 (Qt name)
        """Docks tabbed together show their whole titles: Qt elides them ("Cur…", "Landsca…"
        in a right dock at 280 px under Xvfb); a tab bar too narrow for them scrolls instead.
        Qt makes these tab bars as docks are tabbed and sets their elide mode after making
        them (a child being added is not a QTabBar yet), hence one deferred pass."""
        super().childEvent(event)
        if event.added() and not getattr(self, "_titles_due", False):
            self._titles_due = True
            QTimer.singleShot(0, self._whole_titles)

    def _whole_titles(self) -> None:
        self._titles_due = False
        if not isValid(self):
            return
        for bar in self.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly):
            if bar.elideMode() != Qt.TextElideMode.ElideNone:
                bar.setElideMode(Qt.TextElideMode.ElideNone)
                bar.setUsesScrollButtons(True)

    CENTRE_SHARE = 0.42  # of the window's width, at least, for the tensors

    def _give_centre_room(self) -> None:
        """The tensors get priority: when the window narrows, the side docks give up width
        (in proportion, down to their minimum) until the centre has ``CENTRE_SHARE`` of it."""
        want = int(self.CENTRE_SHARE * self.width())
        short = want - self.centralWidget().width()
        if short <= 0:
            return
        sides = []
        for area in (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea):
            docks = [d for d in self.findChildren(QDockWidget) if self.dockWidgetArea(d) == area
                     and d.isVisible() and not d.isFloating()]
            if docks:
                sides.append(max(docks, key=lambda d: d.width()))
        total = sum(d.width() for d in sides)
        if not total:
            return
        widths = [max(d.minimumSizeHint().width(), int(d.width() - short * d.width() / total)) for d in sides]
        self.resizeDocks(sides, widths, Qt.Orientation.Horizontal)

    def _restore_layout(self) -> None:
        geo = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if geo is not None:
            self.restoreGeometry(geo)
        if state is not None:
            self.restoreState(state, LAYOUT_VERSION)

    def save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState(LAYOUT_VERSION))
        self.settings.sync()
