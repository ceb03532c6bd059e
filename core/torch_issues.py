"""Bugs of the installed torch that a session can run into, each found by a probe (so a torch
that fixed it says nothing): what optimlab shows is what torch does, so these are said, not
worked around. Explain names them in its notes (``core.explain_rules``, ``core.explain_matrix``);
a session built with settings that meet one says so in its notice."""
from __future__ import annotations

import functools

import torch

HALF = (torch.float16, torch.bfloat16)
FUSED_SGD_HALF = ("torch's fused SGD on the CPU leaves float16 and bfloat16 parameters unchanged in whole SIMD "
                  "blocks (pytorch/pytorch#191763, fixed after torch 2.13); foreach=True or fused=False update "
                  "every element")
MUON_BF16 = ("torch's Muon normalises its momentum buffer in place for bfloat16 parameters without nesterov "
             "(pytorch/pytorch#194664), so later steps start from the normalised buffer")


@functools.lru_cache(maxsize=1)
def fused_sgd_skips_half() -> bool:
    """Whether fused CPU SGD leaves bfloat16 parameters' SIMD blocks unchanged (probed on 64 numbers)."""
    try:
        p = torch.nn.Parameter(torch.ones(64, dtype=torch.bfloat16))
        p.grad = torch.ones(64, dtype=torch.bfloat16)
        torch.optim.SGD([p], lr=0.5, fused=True).step()
        return bool((p.detach() == 1).any())
    except Exception:  # noqa: BLE001 - a torch without fused CPU SGD: nothing to say
        return False


@functools.lru_cache(maxsize=1)
def muon_aliases_bf16_buffer() -> bool:
    """Whether Muon's orthogonalisation changes the bfloat16 tensor it is given (probed on a 2x2)."""
    try:
        from torch.optim._muon import _zeropower_via_newtonschulz
        x = torch.tensor([[3.0, 0.0], [0.0, 4.0]], dtype=torch.bfloat16)
        _zeropower_via_newtonschulz(x, (3.4445, -4.775, 2.0315), 1, 1e-7)
        return not torch.equal(x, torch.tensor([[3.0, 0.0], [0.0, 4.0]], dtype=torch.bfloat16))
    except Exception:  # noqa: BLE001 - a torch without it: nothing to say
        return False


# the same, short enough for the window's status line
NOTICE = {"sgd": "Torch's fused CPU SGD skips float16/bfloat16 parameters' SIMD blocks (pytorch/pytorch#191763): "
                 "use foreach=True",
          "muon": "Torch's Muon normalises a bfloat16 momentum buffer in place without nesterov "
                  "(pytorch/pytorch#194664)"}


def for_optimizer(optimizer) -> str:
    """One short sentence naming the torch bug this optimizer's groups meet, or ""."""
    for g in optimizer.param_groups:
        half_cpu = [p for p in g["params"] if p.dtype in HALF and p.device.type == "cpu"]
        if isinstance(optimizer, torch.optim.SGD) and g.get("fused") and half_cpu and fused_sgd_skips_half():
            return NOTICE["sgd"]
        muon = getattr(torch.optim, "Muon", None)
        if (muon is not None and isinstance(optimizer, muon) and not g.get("nesterov")
                and any(p.dtype == torch.bfloat16 for p in g["params"]) and muon_aliases_bf16_buffer()):
            return NOTICE["muon"]
    return ""
