"""Tasks train exactly as a plain PyTorch loop that follows the documented rules."""
import io
import json
from dataclasses import replace
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core import datasets
from core.task_spec import TaskSpec, task_from_dict, task_to_dict
from core import trust
from core.tasks import Task, TaskError, build_model, load_script_task, task_seeds

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "resources" / "examples"

SPECS = {
    "linear_regression": TaskSpec("linear_regression", n_samples=60, n_features=3, batch_size=16, seed=4),
    "logistic_regression": TaskSpec("logistic_regression", dataset="circles", n_samples=60, batch_size=16, seed=5),
    "mlp": TaskSpec("mlp", dataset="spirals", n_samples=60, hidden=(8, 6), activation="tanh", batch_size=16, seed=6),
    "digits_mlp": TaskSpec("digits_mlp", hidden=(16,), activation="gelu", batch_size=128, seed=7),
    "digits_cnn": TaskSpec("digits_cnn", hidden=(4, 8), activation="relu", batch_size=128, seed=8),
}
OPTIMIZERS = [("SGD", {"lr": 0.05, "momentum": 0.9}), ("Adam", {"lr": 0.01})]


# ----- the plain reference: written from the module docstring, not from core.tasks -----

def plain_model(spec):
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}[spec.activation]
    if spec.kind == "linear_regression":
        return nn.Sequential(OrderedDict(linear=nn.Linear(spec.n_features, 1)))
    if spec.kind == "logistic_regression":
        return nn.Sequential(OrderedDict(linear=nn.Linear(2, 1)))
    if spec.kind == "digits_cnn":
        c1, c2 = spec.effective_hidden()
        return nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, c1, 3, padding=1)), ("act1", act()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(c1, c2, 3, padding=1)), ("act2", act()), ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()), ("out", nn.Linear(c2 * 2 * 2, 10))]))
    width, k = (2, 1) if spec.kind == "mlp" else (64, 10)
    layers = []
    for i, h in enumerate(spec.effective_hidden(), 1):
        layers += [(f"fc{i}", nn.Linear(width, h)), (f"act{i}", act())]
        width = h
    return nn.Sequential(OrderedDict(layers + [("out", nn.Linear(width, k))]))


def plain_data(spec):
    s = task_seeds(spec.seed)
    if spec.kind == "linear_regression":
        x, y, _, _ = datasets.make_linear_regression(spec.n_samples, spec.n_features, spec.noise, s.data)
    elif spec.kind in ("logistic_regression", "mlp"):
        x, y = datasets.make_classification(spec.dataset, spec.n_samples, spec.noise, s.data)
    else:
        x, y = datasets.load_digits(flat=spec.kind == "digits_mlp")
    return datasets.train_val_split(x, y, spec.val_fraction, s.split)


def plain_loss(spec, out, y):
    if spec.kind == "linear_regression":
        return F.mse_loss(out, y)
    if spec.kind in ("logistic_regression", "mlp"):
        return F.binary_cross_entropy_with_logits(out.squeeze(1), y.to(torch.float32))
    return F.cross_entropy(out, y)


def plain_train(model, loss_fn, train_x, train_y, spec, optimizer_name, hparams, steps):
    opt = getattr(torch.optim, optimizer_name)(model.parameters(), **hparams)
    g = torch.Generator().manual_seed(task_seeds(spec.seed).order)
    n, bs, done = len(train_x), spec.batch_size, 0
    while done < steps:
        order = torch.randperm(n, generator=g) if spec.shuffle else torch.arange(n)
        for i in range(0, n, bs):
            if done == steps:
                break
            idx = order[i:i + bs]
            opt.zero_grad()
            loss = loss_fn(model(train_x[idx]), train_y[idx])
            loss.backward()
            opt.step()
            done += 1
    return model, opt


def plain_reference(spec, optimizer_name, hparams, steps):
    """Train the task's model with a hand-written loop; returns (model, optimizer)."""
    train_x, train_y, _, _ = plain_data(spec)
    with torch.random.fork_rng(devices=[]):  # a plain script would just call torch.manual_seed
        torch.manual_seed(task_seeds(spec.seed).init)
        model = plain_model(spec)
    return plain_train(model, lambda o, t: plain_loss(spec, o, t), train_x, train_y, spec,
                       optimizer_name, hparams, steps)


def train_task(task, optimizer_name, hparams, steps):
    opt = getattr(torch.optim, optimizer_name)([p for _, p in task.named_parameters()], **hparams)
    for _ in range(steps):
        opt.zero_grad()
        loss = task.loss(task.next_batch())
        loss.backward()
        opt.step()
    return opt


def assert_same(model_a, model_b):
    a, b = dict(model_a.named_parameters()), dict(model_b.named_parameters())
    assert list(a) == list(b)
    for n in a:
        assert torch.equal(a[n], b[n]), n


# ----- fidelity -----

@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize("optimizer_name, hparams", OPTIMIZERS)
def test_task_training_equals_plain_pytorch_loop(kind, optimizer_name, hparams):
    spec = SPECS[kind]
    task = Task(spec)
    steps = 2 * task.steps_per_epoch + 1  # crosses two epoch boundaries
    assert steps <= 30
    opt = train_task(task, optimizer_name, hparams, steps)
    model, plain_opt = plain_reference(spec, optimizer_name, hparams, steps)
    assert_same(task.model, model)
    for (pa, pb) in zip(opt.param_groups[0]["params"], plain_opt.param_groups[0]["params"]):
        for k, v in opt.state[pa].items():
            assert torch.equal(v, plain_opt.state[pb][k]), k
    assert task.epoch == 2 and task.batch_in_epoch == 1


def test_unshuffled_task_serves_batches_in_order():
    spec = TaskSpec("mlp", n_samples=40, batch_size=12, shuffle=False, seed=1)
    task = Task(spec)
    assert task.steps_per_epoch == 3  # 32 training samples: 12, 12, 8
    sizes = [len(task.next_batch()[0]) for _ in range(3)]
    assert sizes == [12, 12, 8] and task.epoch == 1 and task.at_epoch_end
    x, _ = task.next_batch()
    assert torch.equal(x, task.train_x[:12])
    model, _ = plain_reference(spec, "SGD", {"lr": 0.1}, 7)
    task2 = Task(spec)
    train_task(task2, "SGD", {"lr": 0.1}, 7)
    assert_same(task2.model, model)


def test_shuffled_order_is_randperm_of_the_order_seed():
    task = Task(TaskSpec("logistic_regression", n_samples=50, batch_size=10, seed=3))
    g = torch.Generator().manual_seed(task_seeds(3).order)
    for epoch in range(2):
        order = torch.randperm(task.n_train, generator=g)
        for b in range(task.steps_per_epoch):
            x, y = task.next_batch()
            idx = order[b * 10:(b + 1) * 10]
            assert torch.equal(x, task.train_x[idx]) and torch.equal(y, task.train_y[idx])
            assert task.batches_served == epoch * task.steps_per_epoch + b + 1


def test_building_a_task_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    Task(SPECS["mlp"])
    Task(SPECS["digits_cnn"])
    assert torch.equal(torch.get_rng_state(), before)


def test_init_is_default_pytorch_init_under_the_init_seed():
    spec = SPECS["digits_cnn"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(task_seeds(spec.seed).init)
        expected = build_model(spec)
    assert_same(Task(spec).model, expected)
    assert not torch.equal(Task(spec).model.out.weight, Task(replace(spec, seed=9)).model.out.weight)


def test_data_split_does_not_depend_on_batch_size_or_model():
    a = Task(TaskSpec("mlp", n_samples=60, batch_size=8, seed=2))
    b = Task(TaskSpec("mlp", n_samples=60, batch_size=32, hidden=(3,), seed=2))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)


# ----- groups -----

def test_parameters_are_named_as_the_module_names_them():
    names = {k: [n for n, _ in Task(s).named_parameters()] for k, s in SPECS.items()}
    assert names["linear_regression"] == ["linear.weight", "linear.bias"]
    assert names["mlp"] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "out.weight", "out.bias"]
    assert names["digits_cnn"] == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "out.weight", "out.bias"]


def test_default_groups_are_one_per_layer_and_decay_groups_split_weights_from_biases():
    task = Task(SPECS["mlp"])
    assert [g.tensors for g in task.default_groups()] == [
        ("fc1.weight", "fc1.bias"), ("fc2.weight", "fc2.bias"), ("out.weight", "out.bias")]
    decay, no_decay = task.decay_groups()
    assert decay.tensors == ("fc1.weight", "fc2.weight", "out.weight") and decay.hparams == {}
    assert no_decay.tensors == ("fc1.bias", "fc2.bias", "out.bias") and no_decay.hparams == {"weight_decay": 0.0}
    assert task.decay_groups(0.01)[0].hparams == {"weight_decay": 0.01}


# ----- evaluation -----

@pytest.mark.parametrize("was_training", [True, False])
def test_evaluate_uses_no_grad_and_eval_and_restores_the_mode(was_training):
    task = Task(SPECS["mlp"])
    task.model.train(was_training)
    seen = []
    task.model.register_forward_hook(lambda m, i, o: seen.append((m.training, torch.is_grad_enabled())))
    result = task.evaluate()
    assert seen == [(False, False)] and task.model.training is was_training
    with torch.no_grad():
        out = task.model(task.val_x)
    expected = F.binary_cross_entropy_with_logits(out.squeeze(1), task.val_y.float())
    assert result["val_loss"] == float(expected)
    assert result["val_accuracy"] == float(((out.squeeze(1) > 0).long() == task.val_y).float().mean())
    assert all(p.grad is None for p in task.model.parameters())


def test_regression_has_no_accuracy_and_digits_accuracy_is_argmax():
    assert set(Task(SPECS["linear_regression"]).evaluate()) == {"val_loss"}
    task = Task(SPECS["digits_mlp"])
    with torch.no_grad():
        acc = float((task.model(task.val_x).argmax(1) == task.val_y).float().mean())
    assert task.evaluate()["val_accuracy"] == acc


def test_decision_grid_covers_the_data_and_draws_no_gradient():
    task = Task(SPECS["mlp"])
    grid = task.decision_grid(size=20)
    assert grid.xs.shape == (20,) and grid.ys.shape == (20,) and grid.probs.shape == (20, 20)
    assert grid.probs.dtype == np.float32 and ((grid.probs >= 0) & (grid.probs <= 1)).all()
    assert grid.points.shape == (task.n_train, 2) and grid.labels.shape == (task.n_train,)
    assert grid.xs[0] < grid.points[:, 0].min() and grid.xs[-1] > grid.points[:, 0].max()
    with torch.no_grad():
        p = torch.sigmoid(task.model(torch.tensor([[grid.xs[3], grid.ys[7]]], dtype=torch.float32)))
    assert abs(float(p) - grid.probs[7, 3]) < 1e-6  # row = y, column = x
    assert task.model.training and all(p.grad is None for p in task.model.parameters())
    with pytest.raises(ValueError, match="no 2-D decision boundary"):
        Task(SPECS["digits_mlp"]).decision_grid()


# ----- saving -----

def roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True, map_location="cpu")


@pytest.mark.parametrize("first", [4, 5])  # mid-epoch and right at an epoch end (5 batches an epoch)
def test_saved_task_continues_bit_identically(first):
    spec = TaskSpec("mlp", n_samples=60, batch_size=10, seed=11)
    a = Task(spec)
    opt_a = train_task(a, "Adam", {"lr": 0.01}, first)
    saved = roundtrip({"task": a.state(), "params": {n: p.detach().clone() for n, p in a.named_parameters()},
                       "opt": opt_a.state_dict()})
    b = Task(spec)
    b.load_state(saved["task"])
    with torch.no_grad():
        for n, p in b.named_parameters():
            p.copy_(saved["params"][n])
    opt_b = torch.optim.Adam([p for _, p in b.named_parameters()], lr=0.01)
    opt_b.load_state_dict(saved["opt"])
    assert (b.epoch, b.batch_in_epoch) == (a.epoch, a.batch_in_epoch)
    for task, opt in ((a, opt_a), (b, opt_b)):
        for _ in range(8):
            opt.zero_grad()
            task.loss(task.next_batch()).backward()
            opt.step()
    assert_same(a.model, b.model)


def test_a_state_that_does_not_fit_is_refused_and_changes_nothing():
    a = Task(TaskSpec("mlp", n_samples=60, batch_size=10, seed=1))
    a.next_batch()
    bad = dict(a.state(), order=torch.arange(7))
    b = Task(TaskSpec("mlp", n_samples=60, batch_size=10, seed=1))
    before = b.state()
    with pytest.raises(ValueError, match="data order does not fit"):
        b.load_state(bad)
    with pytest.raises(ValueError, match="Invalid data position"):
        b.load_state(dict(a.state(), batch_in_epoch=99))
    after = b.state()
    assert torch.equal(after["order_generator"], before["order_generator"]) and after["batch_in_epoch"] == 0


# ----- the spec -----

def test_task_spec_roundtrips_through_json():
    spec = TaskSpec("digits_cnn", hidden=(4, 8), batch_size=64, shuffle=False, eval_every=5, seed=3)
    assert task_from_dict(json.loads(json.dumps(task_to_dict(spec)))) == spec
    assert task_to_dict(TaskSpec()) == {"kind": "mlp"}


@pytest.mark.parametrize("changes, message", [
    ({"kind": "transformer"}, "Unknown task kind"),
    ({"dataset": "swiss_roll"}, "Unknown data set"),
    ({"n_samples": 2}, "Invalid number of samples"),
    ({"noise": float("nan")}, "Invalid noise"),
    ({"hidden": (0,)}, "Invalid hidden sizes"),
    ({"kind": "logistic_regression", "hidden": (4,)}, "has no hidden layers"),
    ({"kind": "digits_cnn", "hidden": (2, 2, 2, 2)}, "1 to 3 conv layers"),
    ({"activation": "swish"}, "Unknown activation"),
    ({"batch_size": 0}, "Invalid batch size"),
    ({"shuffle": "yes"}, "shuffle must be true or false"),
    ({"val_fraction": 1.0}, "Invalid validation fraction"),
    ({"eval_every": 0}, "Invalid evaluation interval"),
    ({"seed": -1}, "Invalid seed"),
    ({"kind": "script"}, "needs the path"),
])
def test_bad_task_specs_are_refused_with_one_sentence(changes, message):
    with pytest.raises(ValueError, match=message):
        Task(TaskSpec(**changes))
    with pytest.raises(ValueError, match=message):
        task_from_dict(task_to_dict(TaskSpec(**changes)))


# ----- user scripts -----

def test_example_scripts_load_and_train():
    for name, has_acc in (("script_sine_regression.py", False), ("script_xor_classifier.py", True)):
        task = load_script_task(EXAMPLES / name, batch_size=32, seed=2)
        before = task.evaluate()["val_loss"]
        train_task(task, "Adam", {"lr": 0.01}, 40)
        after = task.evaluate()
        assert after["val_loss"] < before and ("val_accuracy" in after) == has_acc


def test_script_task_equals_plain_loop_following_the_documented_seeding():
    import runpy
    path = EXAMPLES / "script_sine_regression.py"
    spec = TaskSpec("script", script=str(path), batch_size=32, seed=5)
    task = Task(spec)
    train_task(task, "SGD", {"lr": 0.05, "momentum": 0.9}, 2 * task.steps_per_epoch + 1)
    ns = runpy.run_path(str(path))
    s = task_seeds(5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.data)
        train_x, train_y, _, _ = ns["make_data"]()
        torch.manual_seed(s.init)
        model = ns["make_model"]()
    plain_train(model, ns["loss_fn"], train_x, train_y, spec, "SGD", {"lr": 0.05, "momentum": 0.9},
                2 * task.steps_per_epoch + 1)
    for (na, a), (nb, b) in zip(task.named_parameters(), model.named_parameters()):
        assert na == nb and torch.equal(a, b)


GOOD = """
import torch
from torch import nn
def make_data():
    x = torch.randn(40, 3)
    return x[:30], x[:30, :1], x[30:], x[30:, :1]
def make_model():
    return {model}
def loss_fn(output, target):
    return {loss}
"""


def write(tmp_path, text, name="task.py"):
    """A user script the user has agreed to run (core.trust)."""
    p = tmp_path / name
    p.write_text(text)
    trust.trust_file(str(p))
    return p


@pytest.mark.parametrize("text, message", [
    ("import torch\nraise RuntimeError('boom at import')\n", "task.py failed: RuntimeError: boom at import"),
    ("def make_model():\n    pass\n", "does not define make_data"),
    (GOOD.format(model="nn.Linear(5, 1)", loss="nn.functional.mse_loss(output, target)"),
     "The model does not fit the data"),
    (GOOD.format(model="nn.Linear(3, 1)", loss="(output - target) ** 2"), "must return a scalar tensor"),
    (GOOD.format(model="nn.Linear(3, 1)", loss="1 / 0"), "loss_fn failed: ZeroDivisionError"),
    (GOOD.format(model="nn.Linear(3, 1)", loss="target.sum()"), "has no gradient"),
    (GOOD.format(model="'not a module'", loss="output.sum()"), "must return a torch.nn.Module"),
    (GOOD.replace("return x[:30], x[:30, :1], x[30:], x[30:, :1]", "return x, x"),
     "must return four tensors"),
    (GOOD.replace("x[30:], x[30:, :1]", "x[30:], x[31:, :1]"), "val_x has 10 samples but val_y has 9"),
])
def test_bad_scripts_are_refused_with_one_sentence(tmp_path, text, message):
    before = torch.get_rng_state()
    with pytest.raises(TaskError, match=message) as info:
        load_script_task(write(tmp_path, text))
    assert "\n" not in str(info.value)
    assert torch.equal(torch.get_rng_state(), before)


def test_script_error_carries_the_users_traceback(tmp_path):
    path = write(tmp_path, "import torch\n\ndef helper():\n    raise KeyError('missing')\n\nhelper()\n", "mine.py")
    with pytest.raises(TaskError) as info:
        load_script_task(path)
    tb = info.value.traceback_text
    assert "mine.py" in tb and "line 4" in tb and "KeyError" in tb


def test_script_dry_run_changes_nothing_in_the_model(tmp_path):
    text = GOOD.format(model="nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))",
                       loss="nn.functional.mse_loss(output, target)")
    task = load_script_task(write(tmp_path, text))
    bn = task.model[1]
    assert int(bn.num_batches_tracked) == 0 and torch.equal(bn.running_mean, torch.zeros(4))
    assert task.model.training
    train_task(task, "SGD", {"lr": 0.1}, 2)
    state = roundtrip(task.state())
    assert int(state["buffers"]["1.num_batches_tracked"]) == 2
    other = load_script_task(write(tmp_path, text))
    other.load_state(state)
    assert torch.equal(other.model[1].running_mean, bn.running_mean)


def test_script_missing_file_is_refused():
    with pytest.raises(TaskError, match="does not exist"):
        load_script_task("/nonexistent/task.py")


def test_task_spec_module_imports_no_torch():
    import subprocess
    import sys
    code = "import sys, core.task_spec; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
