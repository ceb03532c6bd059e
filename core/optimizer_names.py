"""What a spec's ``optimizer`` name may say, read without torch.

Three kinds of name, so that a saved spec says exactly which class ran:

- ``Adam``: a class of ``torch.optim`` (torch's keep their plain names);
- ``pytorch_optimizer.Lion``: a class a known optional collection exports at its top
  level (``COLLECTIONS``: the import name, then the PyPI package that installs it). Only
  these modules are ever imported for a name: a spec cannot make optimlab import any
  other installed module;
- ``file:/abs/path/my_opt.py:MyOpt``: a class defined in a user's own Python file, run
  only with the user's agreement (``core.trust``). A relative path is relative to the
  session file's folder, as a task script's is.
"""
from __future__ import annotations

from dataclasses import dataclass

# import name -> PyPI package (pyproject's [extras] group installs them all)
COLLECTIONS = {
    "pytorch_optimizer": "pytorch_optimizer",
    "lion_pytorch": "lion-pytorch",
    "schedulefree": "schedulefree",
    "prodigyopt": "prodigyopt",
}
FILE_PREFIX = "file:"
TORCH = "torch.optim"


@dataclass(frozen=True)
class OptimizerName:
    """A parsed optimizer name: where the class comes from and what it is called there."""

    kind: str  # "torch", "collection" or "file"
    cls: str  # the class's name
    module: str = ""  # for "collection": the import name
    path: str = ""  # for "file": the Python file, as written in the name

    @property
    def collection(self) -> str:
        """The group it is listed under: "torch.optim", a collection's name or the file."""
        if self.kind == "torch":
            return TORCH
        return self.module if self.kind == "collection" else self.path


def parse(name: str) -> OptimizerName:
    """The parts of ``name``; ValueError (one sentence) for a name of none of the three kinds."""
    if not isinstance(name, str) or not name:
        raise ValueError("The optimizer name is empty")
    if name.startswith(FILE_PREFIX):
        path, sep, cls = name[len(FILE_PREFIX):].rpartition(":")
        if not sep or not path or not cls.isidentifier():
            raise ValueError(f"The optimizer {name!r} must read file:PATH.py:ClassName")
        if not path.endswith(".py"):
            raise ValueError(f"The optimizer {name!r} names {path}, which is not a .py file")
        return OptimizerName("file", cls, path=path)
    if "." in name:
        module, _, cls = name.rpartition(".")
        if module not in COLLECTIONS or not cls.isidentifier():
            raise ValueError(f"Unknown optimizer {name!r}: a qualified name starts with one of "
                             f"{', '.join(COLLECTIONS)} (or is file:PATH.py:ClassName)")
        return OptimizerName("collection", cls, module=module)
    if not name.isidentifier():
        raise ValueError(f"Unknown optimizer {name!r}: not a class name")
    return OptimizerName("torch", name)


def file_name(path: str, cls: str) -> str:
    """The name of class ``cls`` defined in the Python file ``path``."""
    return f"{FILE_PREFIX}{path}:{cls}"


def with_path(name: str, path: str) -> str:
    """``name`` (a file's class) with its file's path written as ``path``."""
    return file_name(path, parse(name).cls)


def is_torch(name: str) -> bool:
    try:
        return parse(name).kind == "torch"
    except ValueError:
        return False
