"""StateTree: the state_dict as the PyTorch walkthrough prints it, updated in place."""
import numpy as np
import pytest
from PySide6.QtGui import QGuiApplication

from core.snapshot import ArrayView, GroupSnapshot, History, Snapshot, TensorSnapshot, frozen
from widgets.state_tree import StateTree, format_array

from .keys import shown


def exact(a) -> ArrayView:
    a = frozen(np.asarray(a, dtype=np.float32))
    return ArrayView(a.shape, "float32", a, True, (1,) * a.ndim, float(a.min()), float(a.max()),
                     float(a.mean()), float(np.linalg.norm(a)))


def preview(shape) -> ArrayView:
    v = frozen(np.zeros((256, 256), np.float32))
    return ArrayView(shape, "float32", v, False, (16, 16), -0.0123, 0.0456, 0.0001, 12.5)


def snapshot(seq=1, buf=0.0052, with_state=True, groups=1) -> Snapshot:
    hp = {"lr": 0.001, "momentum": 0.9, "dampening": 0, "weight_decay": 0, "nesterov": False,
          "maximize": False, "foreach": None, "differentiable": False, "fused": None}
    state_w = {"momentum_buffer": exact(np.full((2, 2), buf))} if with_state else {}
    state_b = {"momentum_buffer": exact([buf, -buf]), "step": exact(np.float32(3.0))} if with_state else {}
    tensors = (TensorSnapshot("weight", 0, 0, exact(np.ones((2, 2))), exact(np.ones((2, 2))),
                              state=state_w),
               TensorSnapshot("bias", 1, min(1, groups - 1), exact([0.0, 1.0]), None,
                              state=state_b))
    gs = (GroupSnapshot(0, dict(hp), (0,) if groups > 1 else (0, 1), ("weight",)),)
    if groups > 1:
        gs += (GroupSnapshot(1, {**hp, "lr": 0.01}, (1,), ("bias",)),)
    return Snapshot(seq=seq, step=seq, loss=None, optimizer="SGD", device="cpu", defaults=dict(hp),
                    groups=gs, tensors=tensors, history=History.empty())


@pytest.fixture
def tree(qtbot):
    w = StateTree()
    shown(qtbot, w, 380, 420)
    return w


def test_shows_defaults_state_and_param_groups(tree):
    tree.setSnapshot(snapshot())
    assert tree.text_of(("defaults", "lr")) == "lr: 0.001"
    assert tree.text_of(("defaults", "foreach")) == "foreach: None"
    assert tree.text_of(("state", "0")) == "0 (weight)"
    assert tree.text_of(("state", "0", "momentum_buffer")) == (
        "momentum_buffer: tensor 2x2 [[0.0052, 0.0052], [0.0052, 0.0052]]")
    assert tree.text_of(("state", "1", "momentum_buffer")) == (
        "momentum_buffer: tensor 2 [ 0.0052, -0.0052]")
    assert tree.text_of(("state", "1", "step")) == "step: 3.0"
    assert tree.text_of(("param_groups", "0", "params")) == "params: [0, 1]"
    assert tree.text_of(("param_groups", "0", "momentum")) == "momentum: 0.9"


def test_state_is_empty_dict_before_first_step(tree):
    tree.setSnapshot(snapshot(with_state=False))
    assert tree.text_of(("state",)) == "state: {}"
    with pytest.raises(KeyError):
        tree.text_of(("state", "0"))


def test_big_tensor_shows_statistics_not_values():
    assert format_array(preview((4096, 4096))) == (
        "tensor 4096x4096 min -0.0123 max 0.0456 mean 0.0001")


def test_large_exact_tensor_is_summarised_on_one_line():
    text = format_array(exact(np.arange(100.0).reshape(10, 10)))
    assert text.startswith("tensor 10x10 [[ 0.0000,  1.0000, ...,") and "\n" not in text


def test_update_changes_texts_in_place_and_keeps_expansion_and_selection(tree):
    tree.setSnapshot(snapshot(seq=1))
    defaults = tree.itemAtPath(("defaults",))
    buf = tree.itemAtPath(("state", "0", "momentum_buffer"))
    defaults.setExpanded(False)
    tree.setCurrentItem(buf)
    tree.setSnapshot(snapshot(seq=2, buf=0.0104))
    assert tree.itemAtPath(("state", "0", "momentum_buffer")) is buf
    assert "0.0104" in tree.text_of(("state", "0", "momentum_buffer"))
    assert not tree.itemAtPath(("defaults",)).isExpanded()
    assert tree.itemAtPath(("state", "0")).isExpanded()
    assert tree.currentItem() is buf


def test_new_group_appears_without_collapsing_others(tree):
    tree.setSnapshot(snapshot(seq=1))
    tree.itemAtPath(("param_groups", "0")).setExpanded(False)
    tree.setSnapshot(snapshot(seq=2, groups=2))
    assert tree.text_of(("param_groups", "1", "lr")) == "lr: 0.01"
    assert tree.text_of(("param_groups", "1", "params")) == "params: [1]"
    assert tree.text_of(("param_groups",)) == "param_groups: 2 groups"
    assert not tree.itemAtPath(("param_groups", "0")).isExpanded()


def test_same_seq_is_not_redrawn(tree):
    tree.setSnapshot(snapshot(seq=5))
    tree.setSnapshot(snapshot(seq=5, buf=1.0))
    assert "0.0052" in tree.text_of(("state", "0", "momentum_buffer"))


def test_copy_puts_selected_text_on_clipboard(tree):
    tree.setSnapshot(snapshot())
    tree.setCurrentItem(tree.itemAtPath(("param_groups", "0", "params")))
    tree.copySelection()
    assert QGuiApplication.clipboard().text() == "params: [0, 1]"


def test_renders_at_dock_width(tree):
    tree.setSnapshot(snapshot(groups=2))
    tree.itemAtPath(("defaults",)).setExpanded(False)
    tree.setCurrentItem(tree.itemAtPath(("state", "0", "momentum_buffer")))
    assert not tree.grab().isNull()
    tree.grab().save("/tmp/state_tree.png")
