"""Distributions over time: fixed-bin histograms of parameters, gradients and every state
tensor, kept per step (or bucket), counted on the device, saved and rewound with the timeline."""
import math

import numpy as np
import pytest
import torch

from core import distributions, session_file
from core.distributions import EDGES, N_BINS, NAN_BIN, Distributions, counts, scatter_counts
from core.session import Session
from tests.core.test_fidelity import make_spec


def test_counts_put_each_value_in_its_sign_and_decade_bin():
    t = torch.tensor([0.0, 1e-20, 3e-3, -3e-3, 5.0, -7e8, float("inf"), float("nan"), float("nan")])
    c = counts(t).numpy()
    assert c.sum() == t.numel() and c[NAN_BIN] == 2
    assert c[np.searchsorted(EDGES, 0.0)] == 2  # zero and the tiny value share the middle bin
    for v in (3e-3, -3e-3, 5.0):
        assert c[np.searchsorted(EDGES, v, side="left")] >= 1
    assert c[0] == 1 and c[N_BINS - 1] == 1  # beyond 1e6 on each side (with inf)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bins_by_arithmetic_are_bucketize_bins_even_an_ulp_from_an_edge(dtype):
    """``bin_index`` (a log10 and a correction) gives ``torch.bucketize``'s bins: at each edge, an
    ulp either side of it, for zeros, subnormals, infinities and values over 30 decades."""
    e = torch.as_tensor(EDGES, dtype=dtype)
    up, down = torch.nextafter(e, torch.full_like(e, math.inf)), torch.nextafter(e, torch.full_like(e, -math.inf))
    special = torch.tensor([0.0, -0.0, math.inf, -math.inf, 1e-45, -1e-45, 1e-300, 5e-324, 1e300, 1e-12, -1e6],
                           dtype=dtype)
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(100_000, generator=g, dtype=dtype) * 10 ** (torch.rand(100_000, generator=g,
                                                                                  dtype=dtype) * 30 - 16)
    x = torch.cat([e, up, down, special, spread])
    assert torch.equal(distributions.bin_index(x), torch.bucketize(x, e))
    nan = torch.tensor([math.nan, -math.nan], dtype=dtype)
    assert distributions.bin_index(nan).tolist() == [NAN_BIN, NAN_BIN]


def test_the_gpu_way_of_counting_bins_counts_what_bincount_counts_even_when_deterministic():
    """Off the CPU the bins are counted by a scatter-add (CUDA's bincount syncs with the host)."""
    some = torch.randint(0, N_BINS + 1, (50_000,), generator=torch.Generator().manual_seed(0))
    idx = torch.cat([torch.arange(N_BINS + 1), some])
    want = torch.bincount(idx, minlength=N_BINS + 1)
    assert torch.equal(scatter_counts(idx), want)
    torch.use_deterministic_algorithms(True)
    try:
        assert torch.equal(scatter_counts(idx), want)
    finally:
        torch.use_deterministic_algorithms(False)


def test_a_big_tensor_is_counted_on_a_stride_and_scaled_to_its_size():
    t = torch.randn(3000, 1000)
    c = counts(t)
    assert abs(float(c.sum()) - t.numel()) < 1e-3 * t.numel()


def test_time_buckets_merge_by_adding_counts():
    d = Distributions(capacity=4)
    for step in range(1, 10):
        d.add(step, {(0, "value"): np.full(N_BINS + 1, float(step), np.float32)})
    steps, mean = d.view((0, "value"))
    assert d.width == 4 and list(steps) == [4.0, 8.0, 12.0]
    assert mean[0, 0] == (1 + 2 + 3 + 4) / 4 and mean[2, 0] == 9  # a mean histogram per step


def test_the_session_records_weights_grads_and_state_and_they_survive_save_and_rewind(tmp_path):
    s = Session(make_spec("Adam", "objective"))
    for _ in range(6):
        s.observer.force_next = True  # measured steps (the budget decides otherwise)
        s.advance()
    s.flush()
    for which in ("value", "grad", "exp_avg", "exp_avg_sq"):
        steps, edges, mean = s.distribution("t0", which)
        assert list(steps) == [1, 2, 3, 4, 5, 6] and len(edges) == N_BINS - 1
        assert np.allclose(mean.sum(axis=1), s.params["t0"].numel())
    live = s.params["t0"].detach()
    assert np.array_equal(s.distribution("t0")[2][-1], counts(live).numpy())  # the last step: the tensor now
    session_file.save_session(s, tmp_path / "d.optimlab")
    r = session_file.load_session(tmp_path / "d.optimlab")
    assert np.array_equal(r.distribution("t0", "exp_avg")[2], s.distribution("t0", "exp_avg")[2])
    s.goto(3)
    assert list(s.distribution("t0")[0]) == [1, 2, 3]


def test_histograms_travel_back_with_the_other_measurements_in_one_read():
    s = Session(make_spec("Adam", "objective"))
    s.observer.check_every = 8  # as on a GPU: read back in batches
    for _ in range(8):
        s.observer.force_next = True
        s.advance()
    assert list(s.distribution("t1")[0]) == list(range(1, 9))


def test_counting_many_tensors_together_gives_each_its_own_counts():
    g = torch.Generator().manual_seed(3)
    ts = [torch.randn(5, 7, generator=g) * 1e3, torch.zeros(4), torch.tensor([float("nan"), float("inf"), -1e-13]),
          torch.randn(3, dtype=torch.float64, generator=g), torch.randn(6, generator=g).to(torch.bfloat16),
          torch.randn(2 ** 20 + 5, generator=g)]
    together = distributions.counts_many(ts)
    for t, row in zip(ts, together):
        assert torch.equal(row, distributions.counts(t))
