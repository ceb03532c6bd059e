"""The training-task part of an exported script: data, model, loss, batches and evaluation.

It writes out the recipe ``core.tasks`` documents for a plain script: the data from
``core.datasets`` (its functions' source copied in; the digits read from the shipped
``digits.npz``), the seeded split, the model built after ``torch.manual_seed(init seed)``,
the seeded data order, and the loss. A script task runs the user's file
(``runpy.run_path``), checked against the SHA-256 it had at export.

Files the script reads (``files_read``) are found with the script's ``beside(path)``: a
copy beside the script if there is one (the folder was moved or sent), else the path
they had at export.
"""
from __future__ import annotations

import inspect
import textwrap

from . import datasets, trust
from .tasks import task_seeds
from .task_spec import TaskSpec

_ACTIVATIONS = {"relu": "nn.ReLU()", "tanh": "nn.Tanh()", "sigmoid": "nn.Sigmoid()", "gelu": "nn.GELU()"}
_MAKERS = {"moons": datasets.make_moons, "circles": datasets.make_circles, "spirals": datasets.make_spirals,
           "xor": datasets.make_xor}


def files_read(spec: TaskSpec) -> list[tuple[str, str]]:
    """(absolute path at export, what it is) of each file the task's part of the script reads."""
    if spec.kind == "script":
        return [(str(trust.resolve(spec.script, None)), "your task script")]
    if spec.kind in ("digits_mlp", "digits_cnn"):
        return [(str(datasets.DIGITS_PATH), "the 8x8 digits shipped with optimlab")]
    return []


def source(*functions) -> list[str]:
    """The source of module-level functions, as lines (copied into the script)."""
    out = []
    for fn in functions:
        out += textwrap.dedent(inspect.getsource(fn)).rstrip().splitlines() + ["", ""]
    return out


def _model(spec: TaskSpec) -> str:
    """``core.tasks.build_model``'s architecture, written out."""
    act = _ACTIVATIONS[spec.activation]
    if spec.kind == "linear_regression":
        layers = [f'("linear", nn.Linear({spec.n_features}, 1))']
    elif spec.kind == "logistic_regression":
        layers = ['("linear", nn.Linear(2, 1))']
    elif spec.kind == "digits_cnn":
        layers, channels, size = [], 1, 8
        for i, c in enumerate(spec.effective_hidden(), 1):
            layers += [f'("conv{i}", nn.Conv2d({channels}, {c}, 3, padding=1))', f'("act{i}", {act})',
                       f'("pool{i}", nn.MaxPool2d(2))']
            channels, size = c, size // 2
        layers += ['("flatten", nn.Flatten())', f'("out", nn.Linear({channels * size * size}, 10))']
    else:
        width, k = (2, 1) if spec.kind == "mlp" else (64, 10)
        layers = []
        for i, h in enumerate(spec.effective_hidden(), 1):
            layers += [f'("fc{i}", nn.Linear({width}, {h}))', f'("act{i}", {act})']
            width = h
        layers.append(f'("out", nn.Linear({width}, {k}))')
    return "model = nn.Sequential(OrderedDict([\n    " + ",\n    ".join(layers) + ",\n]))"


def _data(spec: TaskSpec, seeds) -> list[str]:
    if spec.kind == "linear_regression":
        return source(datasets._check, datasets.make_linear_regression, datasets.train_val_split) + [
            f"x, y, _, _ = make_linear_regression({spec.n_samples}, {spec.n_features}, {spec.noise!r}, {seeds.data})"]
    if spec.two_d:
        maker = _MAKERS[spec.dataset]
        return source(datasets._check, datasets._halves, datasets._finish, maker, datasets.train_val_split) + [
            f"x, y = {maker.__name__}({spec.n_samples}, {spec.noise!r}, {seeds.data})"]
    shape = "(len(x), 64)" if spec.kind == "digits_mlp" else "(len(x), 1, 8, 8)"
    return source(datasets.train_val_split) + [
        "# the 8x8 digits shipped with optimlab (core/datasets.py load_digits)",
        f"with np.load(beside({str(datasets.DIGITS_PATH)!r})) as z:",
        '    images, labels = z["images"], z["labels"]',
        "x = torch.from_numpy(images.astype(np.float32) / np.float32(16.0))",
        f"x = x.reshape{shape}.contiguous()",
        "y = torch.from_numpy(labels.astype(np.int64))"]


def _loss(spec: TaskSpec) -> list[str]:
    if spec.kind == "linear_regression":
        body = "return F.mse_loss(output, target)"
    elif spec.two_d:
        body = "return F.binary_cross_entropy_with_logits(output.squeeze(1), target.to(output.dtype))"
    else:
        body = "return F.cross_entropy(output, target)"
    return ["def loss_fn(output, target):", f"    {body}"]


def setup(spec: TaskSpec, device: str) -> list[str]:
    """Data, model and loss of the task, seeded as optimlab seeds them."""
    seeds = task_seeds(spec.seed)
    out = [f"# task seeds: (seed {spec.seed} * 1_000_003 + k) % 2**63 for k = 1 data, 2 split, 3 init, 4 order", "", ""]
    if spec.kind == "script":
        path = trust.resolve(spec.script, None)
        digest = trust.digest(path)
        out += [f"TASK_SCRIPT = beside({path!r})",
                f'if hashlib.sha256(open(TASK_SCRIPT, "rb").read()).hexdigest() != {digest!r}:',
                '    print(f"warning: {TASK_SCRIPT} changed since the export; the result may differ")',
                'task = runpy.run_path(str(TASK_SCRIPT), run_name="optimlab_task")',
                f"torch.manual_seed({seeds.data})",
                'train_x, train_y, val_x, val_y = (t.detach().contiguous() for t in task["make_data"]())',
                f"torch.manual_seed({seeds.init})",
                'model = task["make_model"]()',
                'loss_fn = task["loss_fn"]']
    else:
        out += _data(spec, seeds)
        out += [f"train_x, train_y, val_x, val_y = train_val_split(x, y, {spec.val_fraction!r}, {seeds.split})",
                "", f"torch.manual_seed({seeds.init})  # the model's default init draws from the global generator",
                _model(spec), "", ""] + _loss(spec)
    if device != "cpu":
        out += ["", f"model.to({device!r})",
                f"train_x, train_y, val_x, val_y = (t.to({device!r}) for t in (train_x, train_y, val_x, val_y))"]
    out += ["", "", "params = dict(model.named_parameters())"]
    return out


def batches(spec: TaskSpec) -> list[str]:
    """The seeded data order (core/tasks.py, rule 3) and evaluation under no_grad and eval()."""
    seeds = task_seeds(spec.seed)
    order = "torch.randperm(n_train, generator=order_generator)" if spec.shuffle else "torch.arange(n_train)"
    return [
        f"order_generator = torch.Generator().manual_seed({seeds.order})",
        f"n_train, batch_size = train_x.shape[0], {spec.batch_size}",
        "steps_per_epoch = math.ceil(n_train / batch_size)",
        "order, batch_in_epoch = None, 0",
        "", "",
        "def next_batch():",
        '    """The next batch; a new order at the start of every epoch (the last batch may be smaller)."""',
        "    global order, batch_in_epoch",
        "    if batch_in_epoch == 0:",
        f"        order = {order}",
        "    idx = order[batch_in_epoch * batch_size:(batch_in_epoch + 1) * batch_size].to(train_x.device)",
        "    batch_in_epoch = (batch_in_epoch + 1) % steps_per_epoch",
        "    return train_x[idx], train_y[idx]",
        "", "",
        "def evaluate():",
        '    """The validation loss, under eval() and no_grad()."""',
        "    was = model.training",
        "    model.eval()",
        "    try:",
        "        with torch.no_grad():",
        "            return float(loss_fn(model(val_x), val_y))",
        "    finally:",
        "        model.train(was)",
    ]
