"""ProblemEditor: spec in, the user's edits out as checked SessionSpecs."""
from dataclasses import replace

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLineEdit

from core.spec import GradientSpec, GroupSpec, ManualGrad, SessionSpec, TensorSpec
from widgets.problem_editor import NAME, SHAPE, ProblemEditor, parse_shape

from .keys import shown

SEED_SPEC = SessionSpec(
    optimizer="SGD", hparams={"lr": 0.1},
    tensors=(TensorSpec("weight", (2, 2), init="values",
                        values=[[-0.0947, 1.4217], [-1.3000, -1.0501]], grad=ManualGrad("constant", 1.0)),),
)

TWO_GROUPS = SessionSpec(
    tensors=(TensorSpec("a", (3,), grad=ManualGrad()), TensorSpec("b", (2, 2), init="zeros")),
    groups=(GroupSpec(("a",), {"lr": 0.5}), GroupSpec(("b",))),
    gradient=GradientSpec(kind="objective", objective="quadratic", condition=10.0, tensors=("a",)),
)


@pytest.fixture
def editor(qtbot):
    w = ProblemEditor()
    shown(qtbot, w, 360, 700)
    return w


def type_into_cell(qtbot, table, row, col, text):
    """Open the cell's editor as a user would, type ``text`` and press Enter."""
    table.setCurrentCell(row, col)
    table.editItem(table.item(row, col))
    editor = QApplication.focusWidget()
    assert isinstance(editor, QLineEdit)
    editor.selectAll()
    qtbot.keyClicks(editor, text)
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    # Qt 6 commits an item editor's data from a queued call
    qtbot.waitUntil(lambda: table.item(row, col).text() == text)


def test_parse_shape_reads_commas_and_x():
    assert parse_shape("2, 2", "w") == (2, 2)
    assert parse_shape("2x3", "w") == (2, 3)
    assert parse_shape("(4,)", "w") == (4,)
    assert parse_shape("()", "w") == ()


@pytest.mark.parametrize("spec", [SEED_SPEC, TWO_GROUPS])
def test_set_spec_round_trips(editor, qtbot, spec):
    with qtbot.assertNotEmitted(editor.specEdited):
        editor.setSpec(spec)
    assert editor.spec() == spec
    assert editor.table.rowCount() == len(spec.tensors)
    assert editor.errorText() == ""


def test_no_op_rebuild_equals_the_spec_set(editor):
    """Reading every widget back gives the spec that was set (no precision lost in text)."""
    for spec in (SEED_SPEC, TWO_GROUPS):
        editor.setSpec(spec)
        built = editor._build()
        assert built == spec


def test_adding_a_tensor_puts_it_in_the_first_group(editor, qtbot):
    editor.setSpec(TWO_GROUPS)
    with qtbot.waitSignal(editor.specEdited) as sig:
        qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    new = sig.args[0]
    assert len(new.tensors) == 3
    added = new.tensors[-1]
    assert (added.name, added.shape, added.init) == ("w0", (2, 2), "normal")
    assert new.groups[0].tensors == ("a", "w0")
    assert new.groups[0].hparams == {"lr": 0.5}


def test_adding_a_tensor_to_the_implicit_group(editor, qtbot):
    editor.setSpec(SEED_SPEC)
    with qtbot.waitSignal(editor.specEdited) as sig:
        qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    assert sig.args[0].effective_groups()[0].tensors == ("weight", "w0")


def test_rename_renames_in_groups_and_objective(editor, qtbot):
    editor.setSpec(TWO_GROUPS)
    with qtbot.waitSignal(editor.specEdited) as sig:
        type_into_cell(qtbot, editor.table, 0, NAME, "alpha")
    new = sig.args[0]
    assert [t.name for t in new.tensors] == ["alpha", "b"]
    assert new.groups[0] == GroupSpec(("alpha",), {"lr": 0.5})
    assert new.gradient.tensors == ("alpha",)


def test_bad_shape_shows_error_and_emits_nothing(editor, qtbot):
    editor.setSpec(SEED_SPEC)
    with qtbot.assertNotEmitted(editor.specEdited):
        type_into_cell(qtbot, editor.table, 0, SHAPE, "2,x")
    assert "Invalid shape" in editor.errorText()
    assert editor.error.isVisible()
    assert editor.spec() == SEED_SPEC
    with qtbot.waitSignal(editor.specEdited) as sig:  # the user fixes the field
        type_into_cell(qtbot, editor.table, 0, SHAPE, "2x3")
    assert sig.args[0].tensors[0].shape == (2, 3)
    assert sig.args[0].tensors[0].values == [[-0.0947, 1.4217, -1.3], [-1.0501, 0.0, 0.0]]
    assert editor.errorText() == ""


def test_tensor_in_two_groups_is_refused(editor, qtbot):
    editor.setSpec(TWO_GROUPS)
    cell = editor.groups.table.item(0, 1)  # tensor "a", group 1
    with qtbot.assertNotEmitted(editor.specEdited):
        cell.setCheckState(Qt.CheckState.Checked)
    assert "more than one group" in editor.errorText()
    assert editor.spec() == TWO_GROUPS


def test_editing_a_value_cell_switches_to_explicit_values(editor, qtbot):
    spec = replace(SEED_SPEC, tensors=(replace(SEED_SPEC.tensors[0], init="normal", values=None),))
    editor.setSpec(spec)
    grid = editor.detail.values
    with qtbot.waitSignal(editor.specEdited) as sig:
        type_into_cell(qtbot, grid, 1, 0, "2.5")
    t = sig.args[0].tensors[0]
    assert t.init == "values"
    assert t.values == [[0.0, 0.0], [2.5, 0.0]]
    assert editor.detail.init.currentText() == "values"


def test_editing_a_value_keeps_the_other_values(editor, qtbot):
    editor.setSpec(SEED_SPEC)
    with qtbot.waitSignal(editor.specEdited) as sig:
        type_into_cell(qtbot, editor.detail.values, 0, 1, "7")
    assert sig.args[0].tensors[0].values == [[-0.0947, 7.0], [-1.3, -1.0501]]


def test_init_parameters_follow_the_init(editor, qtbot):
    editor.setSpec(SEED_SPEC)
    d = editor.detail
    with qtbot.waitSignal(editor.specEdited) as sig:
        d.init.setCurrentText("uniform")
    assert sig.args[0].tensors[0].init == "uniform"
    assert d.numbers["low"].isVisible() and d.numbers["high"].isVisible()
    assert not d.numbers["mean"].isVisible()
    d.numbers["low"].setFocus()
    d.numbers["low"].selectAll()
    with qtbot.assertNotEmitted(editor.specEdited):
        qtbot.keyClicks(d.numbers["low"], "5")
        qtbot.keyClick(d.numbers["low"], Qt.Key.Key_Return)
    assert "uniform range" in editor.errorText()


def test_switching_to_objective_rosenbrock(editor, qtbot):
    editor.setSpec(SEED_SPEC)
    with qtbot.waitSignal(editor.specEdited) as sig:
        editor.kind.setCurrentIndex(editor.kind.findText("objective"))
    g = sig.args[0].gradient
    assert (g.kind, g.objective) == ("objective", "rosenbrock")
    assert not editor.condition.isVisible()
    with qtbot.waitSignal(editor.specEdited) as sig:
        editor.objective.setCurrentIndex(editor.objective.findText("quadratic"))
    assert sig.args[0].gradient.objective == "quadratic"
    assert editor.condition.isVisible()


def test_session_fields_emit(editor, qtbot):
    editor.setSpec(SEED_SPEC)
    editor.setDevices(["cpu", "cuda:0"])
    with qtbot.waitSignal(editor.specEdited) as sig:
        editor.device.setCurrentIndex(editor.device.findText("cuda:0"))
    assert sig.args[0].device == "cuda:0"
    with qtbot.waitSignal(editor.specEdited) as sig:
        qtbot.mouseClick(editor.zero_each_step, Qt.MouseButton.LeftButton)
    assert sig.args[0].zero_grad_each_step is True


def test_manual_gradient_fill(editor, qtbot):
    editor.setSpec(SEED_SPEC)
    with qtbot.waitSignal(editor.specEdited) as sig:
        editor.detail.grad_fill.setCurrentText("none")
    assert sig.args[0].tensors[0].grad is None
    with qtbot.waitSignal(editor.specEdited) as sig:
        editor.detail.grad_fill.setCurrentText("values")
    assert sig.args[0].tensors[0].grad.values == [[0.0, 0.0], [0.0, 0.0]]


def test_removing_the_last_tensor_is_refused(editor, qtbot):
    editor.setSpec(SEED_SPEC)
    with qtbot.assertNotEmitted(editor.specEdited):
        qtbot.mouseClick(editor.remove_button, Qt.MouseButton.LeftButton)
    assert "no tensors" in editor.errorText()


def test_set_locked_disables_editing(editor, qtbot):
    editor.setSpec(SEED_SPEC)
    editor.setLocked(True)
    assert editor.isLocked()
    for w in (editor.table, editor.add_button, editor.detail.init, editor.kind, editor.seed,
              editor.groups.table):
        assert not w.isEnabled()
    with qtbot.assertNotEmitted(editor.specEdited):
        qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    assert editor.spec() == SEED_SPEC
    editor.setLocked(False)
    assert editor.add_button.isEnabled()


def test_renders_in_a_narrow_dock(editor, qtbot, tmp_path):
    editor.setSpec(SEED_SPEC)
    assert editor.grab().save(str(tmp_path / "problem.png"))
    # the Problem dock is about 300 px wide at 1024x700: the content fits it, nothing cut off
    assert editor._content.minimumSizeHint().width() <= 290


def test_big_tensor_has_no_values_grid(editor, qtbot):
    big = replace(SEED_SPEC, tensors=(TensorSpec("big", (64, 64)),))
    editor.setSpec(big)
    assert not editor.detail.values.isVisible()
    assert "too many" in editor.detail.values_note.text()
    with qtbot.waitSignal(editor.specEdited) as sig:  # a big tensor still edits (no giant lists built)
        editor.detail.dtype.setCurrentText("float64")
    assert sig.args[0].tensors[0] == replace(big.tensors[0], dtype="float64")
