"""optimlab's public API for your own scripts: ``import optimlab``.

    w = optimlab.watch(optimizer, model=model)   # stream frames to the app or `optimlab listen`
    w.report(loss=loss)                          # optional: the loss the curves show
    info = optimlab.inspect("checkpoint.ckpt")   # optimizer state per parameter name

The app's own packages install under the generic top-level names ``core``, ``app`` and
``widgets`` (the design's layout). A user's project may well have a ``core`` of its own,
which would shadow ours or be shadowed by it. So this package loads OUR ``core`` folder
under the name ``optimlab.core`` (its modules import each other relatively), and
``import optimlab`` never imports, registers or needs a top-level ``core``: a user's
``import core`` keeps finding theirs, before or after ours.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

__all__ = ["watch", "Watch", "inspect", "Listener", "listen"]

_CORE = Path(__file__).resolve().parent.parent / "core"  # beside this folder, in a checkout or site-packages


def _load_core():
    """Our ``core`` package, imported as ``optimlab.core`` from the folder beside this one."""
    name = __name__ + ".core"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _CORE / "__init__.py",
                                                  submodule_search_locations=[str(_CORE)])
    if spec is None or spec.loader is None:  # pragma: no cover - a broken install
        raise ImportError(f"optimlab: its core package is missing (looked in {_CORE})")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


core = _load_core()


def watch(optimizer=None, model=None, name=None, address=None, rank=None, **options):
    """Stream ``optimizer``'s frames to a listener (see ``optimlab.core.watch.Watch``). With no
    optimizer, the first one to step in this process is watched (``WatchFirst``)."""
    from .core.watch import Watch, WatchFirst
    if optimizer is None:
        return WatchFirst(model=model, name=name, address=address, rank=rank, **options)
    return Watch(optimizer, model=model, name=name, address=address, rank=rank, **options)


def inspect(path, **options):
    """What a checkpoint holds, per parameter name (see ``optimlab.core.checkpoints``)."""
    from .core.checkpoints import open_checkpoint
    return open_checkpoint(path, **options)


def __getattr__(attr):
    if attr == "Watch":
        from .core.watch import Watch
        return Watch
    if attr in ("Listener", "listen"):
        from .core import listen as _listen
        return getattr(_listen, attr)
    raise AttributeError(f"module 'optimlab' has no attribute {attr!r}")
