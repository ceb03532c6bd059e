"""Plain, read-only data the runner publishes for the GUI: numpy copies, no torch.

Everything here is safe to hand to another thread and to widgets/ (which never
import torch). Arrays are made read-only so a widget cannot edit what it draws.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

# Tensors with at most this many elements travel whole in a snapshot; larger ones
# travel as a display-sized preview plus statistics (exact values on request).
WHOLE_LIMIT = 65_536
PREVIEW_SIDE = 256
HIST_BINS = 64


def frozen(a: np.ndarray) -> np.ndarray:
    """Return ``a`` marked read-only (no copy)."""
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class ArrayView:
    """A tensor as the GUI sees it.

    ``values`` is the whole tensor when ``exact`` is true; otherwise it is a
    downsampled preview (every ``stride``-th element along each axis) and the
    statistics are of the whole tensor. A tensor the window does not show travels
    without values (``shown`` False: ``values`` is empty, the statistics are there).
    ``dtype`` is the tensor's own; the values of a bfloat16 or float16 tensor are a
    float32 copy (numpy has no bfloat16; float32 holds both exactly).
    """

    shape: tuple[int, ...]
    dtype: str
    values: np.ndarray
    exact: bool
    stride: tuple[int, ...]
    min: float
    max: float
    mean: float
    norm: float
    hist_counts: np.ndarray | None = None
    hist_edges: np.ndarray | None = None
    stats_exact: bool = True  # False: min/max/mean/norm are of the preview (big tensor, while running)
    shown: bool = True  # False: only shape, dtype and statistics travelled (the window does not show it)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def is_scalar(self) -> bool:
        return len(self.shape) == 0


@dataclass(frozen=True)
class TensorSnapshot:
    """One parameter: its value, gradient and every optimizer state entry."""

    name: str
    index: int  # position in the optimizer's flat parameter order (state_dict key)
    group: int
    value: ArrayView
    grad: ArrayView | None
    grad_sparse: bool = False
    # optimizer state for this parameter: key -> ArrayView, a number, or a short text
    state: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupSnapshot:
    """One param_group: its hyperparameters (plain Python values) and members."""

    index: int
    hparams: dict[str, object]
    params: tuple[int, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class History:
    """Downsampled scalar series against the step number (all float64)."""

    step: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    update_norm: np.ndarray
    lr: tuple[np.ndarray, ...]  # one series per group; NaN before a group existed
    val_loss: np.ndarray | None = None  # NaN where no evaluation ran (tasks only)
    val_accuracy: np.ndarray | None = None
    # where a point stands for several steps (``bucket`` > 1): the range of each bucket
    loss_min: np.ndarray | None = None
    loss_max: np.ndarray | None = None
    grad_norm_min: np.ndarray | None = None
    grad_norm_max: np.ndarray | None = None
    update_norm_min: np.ndarray | None = None
    update_norm_max: np.ndarray | None = None
    update_ratio: tuple[np.ndarray, ...] = ()  # ||delta p|| / ||p|| per group
    bucket: int = 1  # steps per point

    @staticmethod
    def empty() -> "History":
        e = frozen(np.zeros(0))
        return History(e, e, e, e, (), e, e)


@dataclass(frozen=True)
class Decision:
    """A 2-D classifier's decision map: P(class 1) at (xs[j], ys[i]) plus the data points."""

    xs: np.ndarray
    ys: np.ndarray
    probs: np.ndarray
    points: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class RunError:
    """An exception raised inside the run, carried to the GUI as data."""

    type: str
    message: str
    traceback: str
    # tells two occurrences of the same error apart (snapshots may arrive as copies, so
    # identity cannot, and a restarted runner process counts from scratch): the window
    # shows each occurrence once
    when_ns: int = field(default_factory=time.time_ns)


@dataclass(frozen=True)
class BranchSummary:
    """One branch of the timeline, as a list shows it."""

    id: int
    parent: int | None
    fork_step: int
    steps: int
    last_loss: float | None
    reason: str
    optimizer: str
    current: bool


FRAME_VERSION = 2


@dataclass(frozen=True)
class Snapshot:
    """Everything the GUI draws for one moment of the run (a "frame": plain data, no live objects,
    so a runner process, a comparison or an attached script can all produce one)."""

    seq: int  # increases with every published snapshot
    step: int
    loss: float | None
    optimizer: str
    device: str
    defaults: dict[str, object]
    groups: tuple[GroupSnapshot, ...]
    tensors: tuple[TensorSnapshot, ...]
    history: History
    running: bool = False
    paused_reason: str | None = None
    error: RunError | None = None
    steps_per_second: float = 0.0
    objective: str | None = None  # name of the analytic objective, if any
    path: np.ndarray | None = None  # (k, 2) positions for 2-parameter objectives
    batch_done: int = 0  # progress of a "step N" request
    batch_total: int = 0
    rate_limit: float = 0.0  # steps/s cap, 0 = none
    decision: Decision | None = None  # 2-D classification tasks
    epoch: int | None = None  # tasks: epochs completed
    metrics: dict = field(default_factory=dict)  # tasks: the last evaluation (val_loss, val_accuracy)
    version: int = FRAME_VERSION
    run_id: str = ""
    branch: int = 0
    branches: tuple[BranchSummary, ...] = ()
    at_head: bool = True  # False: rewound; stepping from here forks a new branch
    head_step: int = 0  # the last step of the current branch
    start_step: int = 0  # its first: 0, or the step of the checkpoint it resumes
    breakpoints: tuple[tuple[str, bool], ...] = ()  # (condition, enabled)
    checkpoint_bytes: int = 0
    checkpoint_budget: int = 0
    notice: str = ""  # the last timeline event, for the status bar
    added: tuple[str, ...] = ()  # tensors that joined by add_param_group (not in the spec)
    can_undo: bool = False
    can_redo: bool = False
    journal_len: int = 0  # entries in the current branch's journal (an edit while paused adds one)

    def tensor(self, name: str) -> TensorSnapshot | None:
        for t in self.tensors:
            if t.name == name:
                return t
        return None


Frame = Snapshot  # the design's name for it
