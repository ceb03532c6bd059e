"""optimlab's desktop program (PySide6 + pyqtgraph): window, docks and the runner bridge."""
