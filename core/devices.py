"""Where and in what a session computes: devices, parameter dtypes, determinism.

A device is named as torch names it (``cpu``, ``cuda``, ``cuda:N``, ``mps``); the engine
works with its canonical name (``cuda`` is the current CUDA device, ``cuda:0`` say), so
two names of one device never look like a move. A device torch does not report here is
refused in one sentence before anything is built.

Parameters are float32, float64, bfloat16 or float16. numpy has no bfloat16 and draws
float16 slowly, so what is *shown* of a low-precision tensor is a float32 copy (exact:
float32 holds every bfloat16 and float16 value); what is saved keeps its dtype.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from .spec import SpecError

DISPLAY_AS_FLOAT32 = (torch.bfloat16, torch.float16)  # numpy cannot hold them, or draws them slowly
CUBLAS_WORKSPACE = ":4096:8"  # what torch's reproducibility notes ask for deterministic cuBLAS


def available() -> list[str]:
    """Devices torch reports on this machine, CPU first (``cuda:N`` for each GPU, ``mps``)."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def canonical(device: str) -> str:
    """The name of ``device`` the engine uses (``cuda`` -> ``cuda:<current>``), refused in one
    sentence if torch has no such device here."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise SpecError(f"Device {device!r} is not a torch device: use cpu, cuda, cuda:N or mps") from None
    if d.type == "cpu":
        name = "cpu"
    elif d.type == "cuda":
        if not torch.cuda.is_available():
            raise SpecError(f"Device {device!r} is not available here: torch reports no CUDA GPU "
                            f"(devices: {', '.join(available())})")
        name = f"cuda:{torch.cuda.current_device() if d.index is None else d.index}"
    elif d.type == "mps":
        name = "mps"
    else:
        name = str(d)
    if name not in available():
        raise SpecError(f"Device {device!r} is not available here; torch reports {', '.join(available())}")
    return name


def for_display(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, or a float32 copy of it when numpy cannot show its dtype well (on its device)."""
    return t.float() if t.dtype in DISPLAY_AS_FLOAT32 else t


@contextmanager
def deterministic(on: bool = True):
    """``torch.use_deterministic_algorithms(True)`` while inside (as a plain script would call it
    at its top), with ``CUBLAS_WORKSPACE_CONFIG`` set if it is not: cuBLAS needs it for
    repeatable matrix products on CUDA. The previous mode comes back after."""
    if not on or torch.are_deterministic_algorithms_enabled():
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)

