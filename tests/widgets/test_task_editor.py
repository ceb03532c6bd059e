"""TaskEditor: a TaskSpec in, the user's edits out as checked TaskSpecs."""
from unittest import mock

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from core.task_spec import TaskSpec
from widgets.task_editor import TaskEditor, parse_hidden
from tests.widgets.keys import type_into

from .keys import shown

SPECS = [
    TaskSpec(),
    TaskSpec(kind="linear_regression", n_samples=500, noise=0.5, n_features=3, batch_size=16, seed=7),
    TaskSpec(kind="mlp", dataset="spirals", hidden=(32, 32, 8), activation="tanh", shuffle=False,
             val_fraction=0.25, eval_every=5),
    TaskSpec(kind="digits_cnn", hidden=(4, 8), activation="gelu"),
    TaskSpec(kind="script", script="/tmp/task.py", batch_size=64),
]


@pytest.fixture
def editor(qtbot):
    w = TaskEditor()
    shown(qtbot, w, 360, 600)
    return w


def test_parse_hidden_reads_commas_and_spaces():
    assert parse_hidden("16, 16") == (16, 16)
    assert parse_hidden("(8 16)") == (8, 16)
    assert parse_hidden("  ") == ()
    with pytest.raises(ValueError, match="Invalid hidden sizes"):
        parse_hidden("16, x")


@pytest.mark.parametrize("spec", SPECS)
def test_set_task_round_trips_without_emitting(editor, qtbot, spec):
    with qtbot.assertNotEmitted(editor.taskEdited):
        editor.setTask(spec)
    assert editor.task() == spec
    assert editor.kind.currentText() == spec.kind
    assert editor.errorText() == ""


def test_set_task_shows_every_field(editor):
    editor.setTask(SPECS[2])
    assert editor.dataset.currentText() == "spirals"
    assert editor.hidden.text() == "32, 32, 8"
    assert editor.activation.currentText() == "tanh"
    assert not editor.shuffle.isChecked()
    assert editor.val_fraction.text() == "0.25"
    assert editor.eval_every.text() == "5"


def test_switching_to_digits_mlp_hides_data_set_and_emits(editor, qtbot):
    editor.setTask(TaskSpec(kind="mlp"))
    assert editor.isRowShown(editor.dataset)
    with qtbot.waitSignal(editor.taskEdited) as sig:
        editor.kind.setCurrentText("digits_mlp")
    assert sig.args[0].kind == "digits_mlp"
    assert sig.args[0] == editor.task()
    assert not editor.isRowShown(editor.dataset)
    assert not editor.isRowShown(editor.noise)
    assert editor.isRowShown(editor.hidden)
    assert editor.hidden.placeholderText() == "default: 64"


def test_rows_follow_the_kind(editor):
    editor.setTask(TaskSpec(kind="linear_regression"))
    assert editor.isRowShown(editor.n_features) and editor.isRowShown(editor.noise)
    assert not editor.isRowShown(editor.hidden) and not editor.isRowShown(editor.dataset)
    editor.setTask(TaskSpec(kind="script", script="a.py"))
    assert editor.isRowShown(editor._script_row)
    assert not editor.isRowShown(editor.n_samples)


def test_hidden_sizes_typed_are_emitted(editor, qtbot):
    with qtbot.waitSignal(editor.taskEdited) as sig:
        type_into(qtbot, editor.hidden, "32, 8")
    assert sig.args[0].hidden == (32, 8)


def test_bad_hidden_text_shows_error_and_emits_nothing(editor, qtbot):
    before = editor.task()
    with qtbot.assertNotEmitted(editor.taskEdited):
        type_into(qtbot, editor.hidden, "16, x")
    assert "Invalid hidden sizes" in editor.errorText()
    assert editor.error.isVisible()
    assert editor.task() == before
    with qtbot.waitSignal(editor.taskEdited):  # fixing it clears the message
        type_into(qtbot, editor.hidden, "16, 4")
    assert editor.errorText() == ""


def test_batch_size_zero_refused_with_task_sentence(editor, qtbot):
    with qtbot.assertNotEmitted(editor.taskEdited):
        type_into(qtbot, editor.batch_size, "0")
    with pytest.raises(ValueError) as e:
        TaskSpec(batch_size=0).check()
    assert editor.errorText() == str(e.value)
    assert editor.task().batch_size == 32


def test_noise_text_refused_with_task_sentence(editor, qtbot):
    with qtbot.assertNotEmitted(editor.taskEdited):
        type_into(qtbot, editor.noise, "lots")
    assert editor.errorText().startswith("Invalid noise")


def test_script_path_emits_script_task(editor, qtbot):
    with qtbot.waitSignal(editor.taskEdited) as sig:
        editor.setScriptPath("/tmp/my_task.py")
    assert sig.args[0].kind == "script"
    assert sig.args[0].script == "/tmp/my_task.py"
    assert editor.script.text() == "/tmp/my_task.py"


def test_browse_uses_a_python_file_dialog(editor, qtbot):
    editor.setTask(TaskSpec(kind="script", script="old.py"))
    with mock.patch.object(QFileDialog, "getOpenFileName", return_value=("/tmp/new.py", "")) as dlg, \
            qtbot.waitSignal(editor.taskEdited) as sig:
        qtbot.mouseClick(editor.browse, Qt.MouseButton.LeftButton)
    assert dlg.call_args.args[3] == "Python (*.py)"
    assert sig.args[0].script == "/tmp/new.py"


def test_script_kind_without_path_asks_for_one(editor, qtbot):
    with qtbot.assertNotEmitted(editor.taskEdited):
        editor.kind.setCurrentText("script")
    assert "needs the path" in editor.errorText()


def test_shuffle_checkbox_emits(editor, qtbot):
    with qtbot.waitSignal(editor.taskEdited) as sig:
        qtbot.mouseClick(editor.shuffle, Qt.MouseButton.LeftButton, pos=editor.shuffle.rect().center())
    assert sig.args[0].shuffle is False


def test_regroup_buttons_emit(editor, qtbot):
    with qtbot.waitSignal(editor.decayGroupsRequested):
        qtbot.mouseClick(editor.decay_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(editor.layerGroupsRequested):
        qtbot.mouseClick(editor.layer_button, Qt.MouseButton.LeftButton)


def test_locked_editor_is_read_only(editor):
    editor.setLocked(True)
    assert editor.isLocked()
    assert not editor.kind.isEnabled() and not editor.decay_button.isEnabled()
    editor.setLocked(False)
    assert editor.kind.isEnabled()


def test_renders_at_dock_size(editor, qtbot):
    editor.setTask(SPECS[2])
    editor.resize(360, 600)
    assert not editor.grab().isNull()
    # the content fits the dock's width: no horizontal scrolling, no clipping (the Problem dock
    # is about 300 px wide in a 1024x700 window: the regroup buttons' texts were cut there)
    for spec in SPECS:
        editor.setTask(spec)
        assert editor._content.minimumSizeHint().width() <= 290


def test_typed_script_path_emits(editor, qtbot):
    editor.setTask(TaskSpec(kind="script", script="a.py"))
    with qtbot.waitSignal(editor.taskEdited) as sig:
        type_into(qtbot, editor.script, "b.py")
    assert sig.args[0].script == "b.py"
