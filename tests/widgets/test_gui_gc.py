"""Python's garbage collector on the GUI thread only (widgets.gui_gc)."""
import gc
import weakref

from widgets.gui_gc import GuiCollector, collect_due


class Node:
    pass


def test_automatic_collection_is_off_and_the_gui_thread_collects_what_the_thresholds_say(qtbot):
    enabled = gc.isenabled()
    gc.enable()
    collector = GuiCollector()
    try:
        assert not gc.isenabled()  # no collection on whatever thread allocates next (a runner's)
        gc.collect()
        n = Node()
        n.me = n  # a cycle: only the collector frees it
        ref = weakref.ref(n)
        del n
        assert collect_due() == 0 and ref() is not None  # below the thresholds: nothing yet
        alive = []

        def collected() -> bool:
            # allocations past generation 0's threshold, kept alive (objects freed meanwhile, such
            # as widgets an earlier test left to deleteLater, lower the count as they go)
            alive.append([[] for _ in range(gc.get_threshold()[0] + 10)])
            return ref() is None
        qtbot.waitUntil(collected, timeout=3000)  # the timer collected, on this thread
    finally:
        collector.deleteLater()
        if enabled:
            gc.enable()
        else:
            gc.disable()
