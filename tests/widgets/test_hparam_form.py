"""HparamForm: what a user sees and what the app receives when editing hyperparameters."""
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit

from core.hparams import BOOL, CHOICE, FLOAT, INT, OPT_BOOL, TUPLE, HyperParam, OptimizerInfo
from widgets.hparam_form import HparamForm

INFO = OptimizerInfo(
    name="Lab",
    summary="SGD- and Adam-like hyperparameters for testing",
    hparams=(
        HyperParam("lr", FLOAT, 0.001, doc="learning rate"),
        HyperParam("momentum", FLOAT, 0, doc="momentum factor"),
        HyperParam("betas", TUPLE, (0.9, 0.999), doc="running average coefficients", length=2),
        HyperParam("history_size", INT, 100, doc="update history size"),
        HyperParam("nesterov", BOOL, False, doc="enables Nesterov momentum"),
        HyperParam("line_search_fn", CHOICE, None, doc="line search", choices=(None, "strong_wolfe"),
                   optional=True),
        HyperParam("foreach", OPT_BOOL, None, doc="use the foreach implementation",
                   optional=True, advanced=True),
        HyperParam("differentiable", BOOL, False, doc="autograd through step", advanced=True),
    ),
)


def torch_rules(v):
    if v["lr"] < 0:
        return f"Invalid learning rate: {v['lr']}"
    if v["momentum"] < 0:
        return f"Invalid momentum value: {v['momentum']}"
    if v["nesterov"] and v["momentum"] <= 0:
        return "Nesterov momentum requires a momentum and zero dampening"
    return None


@pytest.fixture
def form(qtbot):
    w = HparamForm()
    qtbot.addWidget(w)
    w.setOptimizer(INFO, INFO.defaults)
    w.setValidator(torch_rules)
    w.resize(380, 320)
    w.show()
    qtbot.waitExposed(w)
    return w


def type_into(qtbot, form, name, text):
    ed = form.editor(name)
    assert isinstance(ed, QLineEdit)
    ed.selectAll()
    qtbot.keyClicks(ed, text)
    qtbot.keyClick(ed, Qt.Key.Key_Return)


def test_one_editor_per_kind_showing_formatted_defaults(form):
    assert form.editor("lr").text() == "0.001"
    assert form.editor("betas").text() == "(0.9, 0.999)"
    assert form.editor("history_size").text() == "100"
    assert isinstance(form.editor("nesterov"), QCheckBox)
    combo = form.editor("line_search_fn")
    assert isinstance(combo, QComboBox)
    assert [combo.itemText(i) for i in range(combo.count())] == ["None", "strong_wolfe"]
    assert [form.editor("foreach").itemText(i) for i in range(3)] == ["None", "True", "False"]
    assert form.editor("lr").toolTip() == "learning rate"


def test_negative_lr_shows_torch_message_and_emits_nothing(qtbot, form):
    with qtbot.assertNotEmitted(form.valueChanged):
        type_into(qtbot, form, "lr", "-1")
    assert "Invalid learning rate: -1.0" in form.errorText()
    assert form.editor("lr").property("invalid") is True
    assert form.editor("lr").text() == "-1"  # the bad text stays for correction
    assert form.values()["lr"] == 0.001


def test_unparsable_text_shows_parse_message(qtbot, form):
    with qtbot.assertNotEmitted(form.valueChanged):
        type_into(qtbot, form, "lr", "abc")
    assert "lr must be a number, not 'abc'" in form.errorText()


def test_good_value_emits_float_and_clears_error(qtbot, form):
    type_into(qtbot, form, "lr", "-1")
    with qtbot.waitSignal(form.valueChanged) as sig:
        type_into(qtbot, form, "lr", "1e-2")
    assert sig.args == ["lr", 0.01]
    assert isinstance(sig.args[1], float)
    assert form.errorText() == "" and not form.errorLabel("lr").isVisible()
    assert form.editor("lr").property("invalid") is False
    assert form.editor("lr").text() == "0.01"
    assert form.values()["lr"] == 0.01


def test_betas_text_emits_tuple(qtbot, form):
    with qtbot.waitSignal(form.valueChanged) as sig:
        type_into(qtbot, form, "betas", "(0.8, 0.9)")
    assert sig.args == ["betas", (0.8, 0.9)]


def test_escape_reverts_bad_text(qtbot, form):
    type_into(qtbot, form, "lr", "-1")
    qtbot.keyClick(form.editor("lr"), Qt.Key.Key_Escape)
    assert form.editor("lr").text() == "0.001"
    assert not form.hasErrors()


def test_checkbox_rejected_until_other_field_makes_it_valid(qtbot, form):
    box = form.editor("nesterov")
    with qtbot.assertNotEmitted(form.valueChanged):
        qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))
    assert "Nesterov momentum requires" in form.errorText()
    assert form.values()["nesterov"] is False
    emitted = []
    form.valueChanged.connect(lambda n, v: emitted.append((n, v)))
    type_into(qtbot, form, "momentum", "0.9")
    assert emitted == [("momentum", 0.9), ("nesterov", True)]
    assert not form.hasErrors()


def test_choice_and_optional_bool_emit_python_values(qtbot, form):
    form.setAdvancedExpanded(True)
    choice = form.editor("line_search_fn")
    choice.setCurrentIndex(1)  # what a user's pick does, then Qt's activated signal
    with qtbot.waitSignal(form.valueChanged) as sig:
        choice.activated.emit(1)
    assert sig.args == ["line_search_fn", "strong_wolfe"]
    combo = form.editor("foreach")
    combo.setCurrentIndex(2)
    with qtbot.waitSignal(form.valueChanged) as sig:
        combo.activated.emit(2)
    assert sig.args == ["foreach", False]


def test_rows_off_default_are_marked_and_reset_restores_default(qtbot, form):
    form.setOptimizer(INFO, {**INFO.defaults, "lr": 0.1}, overridden={"momentum"})
    assert form.isMarked("lr") and form.resetButton("lr").isVisible()
    assert form.isMarked("momentum")  # overridden although equal to its default
    assert not form.isMarked("betas") and not form.resetButton("betas").isVisible()
    with qtbot.waitSignal(form.valueChanged) as sig:
        qtbot.mouseClick(form.resetButton("lr"), Qt.MouseButton.LeftButton)
    assert sig.args == ["lr", 0.001]
    assert form.editor("lr").text() == "0.001"
    assert not form.isMarked("lr")
    with qtbot.waitSignal(form.valueChanged) as sig:
        qtbot.mouseClick(form.resetButton("momentum"), Qt.MouseButton.LeftButton)
    assert sig.args == ["momentum", 0]
    assert not form.isMarked("momentum")


def test_editing_away_from_default_marks_the_row(qtbot, form):
    assert not form.isMarked("lr")
    type_into(qtbot, form, "lr", "0.5")
    assert form.isMarked("lr")


def test_advanced_section_hidden_until_expanded(qtbot, form):
    assert not form.isAdvancedExpanded()
    assert not form.editor("foreach").isVisible()
    assert form.editor("lr").isVisible()
    qtbot.mouseClick(form._toggle, Qt.MouseButton.LeftButton)
    assert form.editor("foreach").isVisible()


def test_set_values_updates_editors_silently(qtbot, form):
    with qtbot.assertNotEmitted(form.valueChanged):
        form.setValues({"lr": 0.3, "nesterov": True, "betas": (0.5, 0.6), "foreach": True})
    assert form.editor("lr").text() == "0.3"
    assert form.editor("nesterov").isChecked()
    assert form.editor("betas").text() == "(0.5, 0.6)"
    assert form.editor("foreach").currentText() == "True"
    assert form.values()["betas"] == (0.5, 0.6)
    assert form.isMarked("lr")


def test_renders_at_dock_width(qtbot, form):
    form.setOptimizer(INFO, {**INFO.defaults, "lr": 0.1})
    type_into(qtbot, form, "momentum", "-")
    form.setAdvancedExpanded(True)
    form.resize(380, form.sizeHint().height())
    assert not form.grab().isNull()
    form.grab().save("/tmp/hparam_form.png")


def test_a_bad_value_is_explained_right_under_its_field_and_the_old_one_stays_in_force(qtbot, form):
    with qtbot.waitSignal(form.errorsChanged):
        type_into(qtbot, form, "momentum", "-3")
    label, editor = form.errorLabel("momentum"), form.editor("momentum")
    assert label.isVisible() and label.text() == "Invalid momentum value: -3.0"
    below = label.mapTo(form, label.rect().topLeft()).y() - editor.mapTo(form, editor.rect().bottomLeft()).y()
    assert 0 <= below <= 8, below  # right under the field, not at the end of the form
    assert not form.errorLabel("lr").isVisible()
    assert form.invalidFields() == {"momentum": ("-3", 0)}
    with qtbot.waitSignal(form.errorsChanged):
        type_into(qtbot, form, "momentum", "0.5")
    assert form.invalidFields() == {} and not label.isVisible()
