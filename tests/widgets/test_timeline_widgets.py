"""The timeline strip, the branch tree and the breakpoint list: what they show and what they ask."""
from __future__ import annotations

import html
import re

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from core.snapshot import BranchSummary
from widgets.branch_list import MB, BranchList, size_text
from widgets.breakpoint_list import BreakpointList
from widgets.timeline_strip import TimelineStrip

from .keys import shown, type_into

LEFT = Qt.MouseButton.LeftButton


def test_the_strip_spans_the_branch_and_says_when_it_is_rewound(qtbot):
    strip = shown(qtbot, TimelineStrip(), 360, 80)
    strip.setPosition(40, 40, 2, True)
    assert strip.slider.maximum() == 40 and strip.slider.value() == 40
    assert strip.positionText() == "step 40 of branch 2 (its last)"
    assert not strip.headButton.isEnabled()
    strip.setPosition(12, 40, 2, False)
    assert strip.slider.value() == 12 and strip.stepBox.value() == 12
    assert strip.positionText() == "rewound to step 12 of branch 2 (of 40) — stepping forks a new branch"
    assert strip.headButton.isEnabled()


def test_typing_a_step_or_moving_the_handle_asks_for_it(qtbot):
    strip = shown(qtbot, TimelineStrip(), 360, 80)
    strip.setPosition(40, 40, 0, True)
    with qtbot.waitSignal(strip.gotoRequested) as sig:
        type_into(qtbot, strip.stepBox.lineEdit(), "7")
    assert sig.args == [7]
    strip.setHeld(True)
    with qtbot.waitSignal(strip.gotoRequested) as sig:
        strip.slider.setFocus()
        QTest.keyClick(strip.slider, Qt.Key.Key_Home)
    assert sig.args == [0]
    strip.setPosition(40, 40, 0, True)  # an older frame arrives: the handle stays where the user put it
    assert strip.slider.value() == 0
    strip.setHeld(False)
    assert strip.slider.value() == 40


def branches():
    return (BranchSummary(0, None, 0, 30, 0.5, "start", "SGD", False),
            BranchSummary(1, 0, 30, 12, 0.25, "optimizer changed to Adam", "Adam", True),
            BranchSummary(2, 0, 10, 15, None, "forked from branch 0 at step 10", "SGD", False))


def test_branches_form_a_tree_and_a_click_switches(qtbot):
    bl = shown(qtbot, BranchList(), 520, 260)
    bl.setBranches(branches())
    assert bl.tree.topLevelItemCount() == 1
    root = bl.tree.topLevelItem(0)
    assert [root.child(i).text(1) for i in range(root.childCount())] == ["▶ 1", "2"]
    assert root.child(1).text(2) == "0 at 10" and root.child(1).text(3) == "15" and root.child(1).text(4) == "—"
    rect = bl.tree.visualItemRect(root)
    x = bl.tree.header().sectionPosition(3) + 5
    with qtbot.waitSignal(bl.switchRequested) as sig:
        QTest.mouseClick(bl.tree.viewport(), LEFT, pos=rect.center().__class__(x, rect.center().y()))
    assert sig.args == [0]


def test_ticking_a_branch_asks_for_its_curves(qtbot):
    bl = shown(qtbot, BranchList(), 520, 260)
    bl.setBranches(branches())
    with qtbot.waitSignal(bl.overlayToggled) as sig:
        bl.setOverlay(2, True)
    assert sig.args == [2, True] and bl.overlaid() == {2}
    bl.setBranches(branches()[:2])  # branch 2 gone (another session): no overlay of it is kept
    assert bl.overlaid() == set()


def test_checkpoint_memory_and_its_bound(qtbot):
    bl = shown(qtbot, BranchList(), 520, 260)
    bl.setMemory(3 * MB // 2, 512 * MB)
    assert bl.memory.text() == "checkpoints 1.5 MB of 512 MB"
    assert bl.budgetBox.value() == 512
    with qtbot.waitSignal(bl.budgetChanged) as sig:
        type_into(qtbot, bl.budgetBox.lineEdit(), "64")
    assert sig.args == [64 * MB]
    assert size_text(2 * 2 ** 30) == "2 GB" and size_text(500) == "500 B"


def test_breakpoints_are_listed_toggled_added_and_removed(qtbot):
    bl = shown(qtbot, BreakpointList(), 360, 300)
    bl.setBreakpoints((("loss nonfinite", True), ("params nonfinite", True)))
    assert bl.entries() == [("loss nonfinite", True), ("params nonfinite", True)]
    with qtbot.waitSignal(bl.changeRequested) as sig:
        bl.list.item(1).setCheckState(Qt.CheckState.Unchecked)
    assert sig.args == [[("loss nonfinite", True), ("params nonfinite", False)]]
    with qtbot.waitSignal(bl.changeRequested) as sig:
        type_into(qtbot, bl.field, "step  ==  7")
    assert sig.args[0][-1] == ("step == 7", True)
    bl.setRefusal("Cannot read the breakpoint 'x'")
    assert bl.refusalText() == "Cannot read the breakpoint 'x'"
    bl.setBreakpoints((("loss nonfinite", True), ("params nonfinite", False), ("step == 7", True)))
    assert bl.field.text() == "" and bl.refusalText() == ""  # the condition went in: the field is free
    bl.list.setCurrentRow(0)
    with qtbot.waitSignal(bl.changeRequested) as sig:
        qtbot.mouseClick(bl.removeButton, LEFT)
    assert sig.args == [[("params nonfinite", False), ("step == 7", True)]]


def edit_condition(qtbot, bl: BreakpointList, row: int, text: str) -> None:
    """Double-click the listed condition ``row``, type ``text`` over it and press Enter."""
    from PySide6.QtWidgets import QLineEdit
    rect = bl.list.visualItemRect(bl.list.item(row))
    pos = rect.center().__class__(rect.right() - 20, rect.center().y())  # on the text, not the box
    QTest.mousePress(bl.list.viewport(), LEFT, pos=pos)  # a real double-click begins with a press
    QTest.mouseRelease(bl.list.viewport(), LEFT, pos=pos)
    QTest.mouseDClick(bl.list.viewport(), LEFT, pos=pos)
    qtbot.waitUntil(lambda: bl.list.findChild(QLineEdit) is not None and bl.list.findChild(QLineEdit).isVisible())
    editor = bl.list.findChild(QLineEdit)
    editor.selectAll()
    QTest.keyClicks(editor, text)
    QTest.keyClick(editor, Qt.Key.Key_Return)


def test_a_listed_condition_is_changed_in_place(qtbot):
    bl = shown(qtbot, BreakpointList(), 360, 300)
    bl.setBreakpoints((("loss nonfinite", True), ("loss > 5", False)))
    with qtbot.waitSignal(bl.changeRequested) as sig:
        edit_condition(qtbot, bl, 1, "loss  >  50")
    assert sig.args == [[("loss nonfinite", True), ("loss > 50", False)]]  # its box stays as it was
    bl.setBreakpoints((("loss nonfinite", True), ("loss > 5", False)))  # refused: back to what holds
    assert bl.entries() == [("loss nonfinite", True), ("loss > 5", False)]


def test_a_running_branch_ticks_over_without_the_tree_being_rebuilt(qtbot):
    from dataclasses import replace
    bl = shown(qtbot, BranchList(), 520, 260)
    bl.setBranches(branches())
    bl.setOverlay(2, True)
    bl.tree.setCurrentItem(bl.item(0))
    row = bl.item(1)
    on = list(branches())
    on[1] = replace(on[1], steps=1_250, last_loss=0.125)
    bl.setBranches(tuple(on))
    assert bl.item(1) is row and row.text(3) == "1,250" and row.text(4) == "0.125"
    assert bl.tree.currentItem() is bl.item(0) and bl.overlaid() == {2}  # the user's choices stay
    on.append(BranchSummary(3, 1, 1_250, 0, None, "forked from branch 1 at step 1,250", "Adam", False))
    bl.setBranches(tuple(on))  # a new branch: the tree is redrawn, ticks kept
    assert bl.item(3).parent() is bl.item(1) and bl.overlaid() == {2}
    assert bl.item(2).checkState(0) == Qt.CheckState.Checked


def test_a_click_on_the_strip_rewinds_to_the_step_under_the_mouse(qtbot):
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QStyle, QStyleOptionSlider
    strip = shown(qtbot, TimelineStrip(), 600, 80)
    strip.setPosition(1000, 1000, 0, True)
    opt = QStyleOptionSlider()
    strip.slider.initStyleOption(opt)
    groove = strip.slider.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                                 QStyle.SubControl.SC_SliderGroove, strip.slider)
    at = QPoint(groove.left() + groove.width() // 4, groove.center().y())
    with qtbot.waitSignal(strip.gotoRequested) as sig:
        QTest.mouseClick(strip.slider, LEFT, pos=at)
    assert 150 <= sig.args[0] <= 350  # about a quarter of the run, not one page (10 steps) back


def test_the_breakpoint_examples_name_the_sessions_own_tensor_and_state_entry(qtbot):
    bl = shown(qtbot, BreakpointList(), 360, 240)

    def hint() -> str:
        raw = html.unescape(re.sub(r"<[^>]+>", "", bl.hint.text()))
        # the line wraps between conditions only: inside one, every space is a non-breaking one
        assert all(part.strip(" ") and " " not in part.strip(" ") for part in raw.split("·")), raw
        return raw.replace("\xa0", " ")
    assert "weight.grad abs > 100" in hint()  # before a session: the generic syntax
    bl.setNames("fc1.weight", "momentum_buffer")
    text = hint()
    assert "fc1.weight.grad abs > 100" in text and "fc1.weight.momentum_buffer nonfinite" in text
    assert "w.Q[1]" not in text and " weight.exp_avg_sq" not in text  # no tensor of that name here
    assert "fc1.weight.grad abs > 100" in bl.field.toolTip()
