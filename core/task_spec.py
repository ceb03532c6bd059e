"""What a training task is made of, as a plain dataclass that reads and writes JSON.

No torch here (like ``core.spec``), so widgets can edit a task and ``GradientSpec``
can embed one. ``core.tasks.Task`` turns a ``TaskSpec`` into a model, data and loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from . import schema
from .schema import PathText, Word

TASK_KINDS = ("linear_regression", "logistic_regression", "mlp", "digits_mlp", "digits_cnn", "script")
DATASETS = ("moons", "circles", "spirals", "xor")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
TWO_D_KINDS = ("logistic_regression", "mlp")  # classification of a 2-D data set
CLASSIFICATION_KINDS = ("logistic_regression", "mlp", "digits_mlp", "digits_cnn")
# hidden=() means these sizes (for digits_cnn: the channels of each conv layer)
DEFAULT_HIDDEN = {"mlp": (16, 16), "digits_mlp": (64,), "digits_cnn": (8, 16)}
MAX_SAMPLES = 100_000


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task (model + data + loss + metrics) or a user script, seeded end to end.

    ``dataset`` and ``noise`` apply to the 2-D kinds; ``n_samples`` to the generated
    sets (the digits always have 1,797); ``n_features`` to linear regression;
    ``hidden`` to mlp, digits_mlp (layer widths) and digits_cnn (conv channels,
    1 to 3 layers), ``()`` meaning the kind's default; ``script`` is the path of a
    user script (kind "script"), whose data is its own, so ``val_fraction`` does
    not apply to it.
    """

    kind: Word = "mlp"
    dataset: Word = "moons"
    n_samples: int = 200
    noise: float = 0.1
    n_features: int = 1
    hidden: tuple[int, ...] = ()
    activation: Word = "relu"
    batch_size: int = 32
    shuffle: bool = True
    val_fraction: float = 0.2
    eval_every: int = 10
    seed: int = 0
    script: PathText = ""

    def __post_init__(self):
        if isinstance(self.hidden, (list, tuple)):
            object.__setattr__(self, "hidden", tuple(self.hidden))

    @property
    def classification(self) -> bool:
        return self.kind in CLASSIFICATION_KINDS

    @property
    def two_d(self) -> bool:
        return self.kind in TWO_D_KINDS

    def effective_hidden(self) -> tuple[int, ...]:
        return self.hidden or DEFAULT_HIDDEN.get(self.kind, ())

    def check(self) -> None:
        """Raise ValueError with one sentence if this task cannot be built."""
        if self.kind not in TASK_KINDS:
            raise ValueError(f"Unknown task kind {self.kind!r}: use one of {', '.join(TASK_KINDS)}")
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown data set {self.dataset!r}: use one of {', '.join(DATASETS)}")
        if not _whole(self.n_samples) or not 4 <= self.n_samples <= MAX_SAMPLES:
            raise ValueError(f"Invalid number of samples: {self.n_samples!r} (4 to {MAX_SAMPLES})")
        if isinstance(self.noise, bool) or not isinstance(self.noise, (int, float)) \
                or not math.isfinite(self.noise) or self.noise < 0:
            raise ValueError(f"Invalid noise: {self.noise!r} (a finite number >= 0)")
        if not _whole(self.n_features) or not 1 <= self.n_features <= 1000:
            raise ValueError(f"Invalid number of features: {self.n_features!r} (1 to 1000)")
        self._check_hidden()
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {self.activation!r}: use one of {', '.join(ACTIVATIONS)}")
        if not _whole(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"Invalid batch size: {self.batch_size!r} (a whole number >= 1)")
        if not isinstance(self.shuffle, bool):
            raise ValueError(f"shuffle must be true or false, not {self.shuffle!r}")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0 < self.val_fraction < 1:
            raise ValueError(f"Invalid validation fraction: {self.val_fraction!r} (between 0 and 1)")
        if not _whole(self.eval_every) or self.eval_every < 1:
            raise ValueError(f"Invalid evaluation interval: {self.eval_every!r} (every K >= 1 steps)")
        if not _whole(self.seed) or not 0 <= self.seed < 2 ** 63:
            raise ValueError(f"Invalid seed: {self.seed!r} (a whole number >= 0)")
        if self.kind == "script" and not (isinstance(self.script, str) and self.script.strip()):
            raise ValueError("A script task needs the path of its Python file")

    def _check_hidden(self) -> None:
        h = self.hidden
        if not isinstance(h, tuple) or not all(_whole(n) and 1 <= n <= 4096 for n in h):
            raise ValueError(f"Invalid hidden sizes: {h!r} (whole numbers from 1 to 4096)")
        if h and self.kind in ("linear_regression", "logistic_regression", "script"):
            raise ValueError(f"A {self.kind} task has no hidden layers: leave hidden empty")
        if self.kind == "digits_cnn" and len(h) > 3:
            raise ValueError(f"digits_cnn takes 1 to 3 conv layers (an 8x8 image halves each time), not {len(h)}")
        if len(h) > 8:
            raise ValueError(f"At most 8 hidden layers, not {len(h)}")


def task_to_dict(spec: TaskSpec) -> dict:
    """Only the fields that differ from the defaults, plus ``kind``; JSON-ready."""
    default = TaskSpec()
    out = {}
    for f in fields(TaskSpec):
        v = getattr(spec, f.name)
        if f.name == "kind" or v != getattr(default, f.name):
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def task_from_dict(d: dict, where: str = "task") -> TaskSpec:
    """Build and check a TaskSpec from JSON; the error (a SpecError, a ValueError) names the bad field."""
    spec = schema.convert(d, TaskSpec, where)
    spec.check()
    return spec
