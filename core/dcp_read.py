"""torch.distributed.checkpoint folders, read without torch's own reader.

torch's ``FileSystemReader.read_metadata`` unpickles ``.metadata`` with plain ``pickle.load``
and its planner loads non-tensor entries with ``weights_only=False``: a folder from
elsewhere could run code through either. Here ``.metadata`` is unpickled by an allowlist
of DCP's own metadata classes (anything else is refused, nothing runs), the tensors are
listed from it (shapes, dtypes, chunks) without touching the data files, and a tensor's
chunks are read only when it is asked for: each chunk's bytes are a ``torch.save`` of the
chunk, read with ``weights_only=True`` and placed at the chunk's offsets. Non-tensor
entries (param_groups' hyperparameters, counters) are read the same safe way.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from .paths import LoadError, open_regular

MAX_METADATA_BYTES = 256 << 20
_DCP_META = "torch.distributed.checkpoint.metadata"
_ALLOWED = {
    (_DCP_META, n) for n in ("Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
                             "TensorProperties", "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING")
} | {("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
     ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("collections", "OrderedDict"),
     ("torch.distributed.checkpoint.planner", "LoadItemType"), ("torch.distributed.checkpoint.planner", "WriteItemType")}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return pickle.Unpickler.find_class(self, module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.layout,
                                                                           torch.memory_format)):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"needs {module}.{name}, which DCP metadata never holds")


def read_metadata(folder: Path):
    path = folder / ".metadata"
    with open_regular(path) as f:
        size = f.seek(0, os.SEEK_END)
        if size > MAX_METADATA_BYTES:
            raise LoadError(f"{path} is {size:,} bytes, over the {MAX_METADATA_BYTES:,}-byte limit")
        f.seek(0)
        import torch.distributed.checkpoint.filesystem  # noqa: F401 - the allowlisted classes' modules
        try:
            return _MetadataUnpickler(f).load()
        except Exception as e:  # noqa: BLE001 - refused global, damage, truncation
            raise LoadError(f"Refused {path}: not torch.distributed.checkpoint metadata ({str(e)[:160]}); "
                            "nothing was executed") from None


def load_dcp(folder) -> dict:
    """The checkpoint as the nested dict it was saved from: tensors as lazy TensorRefs,
    other entries read (safely) now."""
    from .checkpoints import TensorRef
    from .safe_load import not_loaded
    folder = Path(folder)
    md = read_metadata(folder)
    storage = {}
    for index, info in md.storage_data.items():
        storage.setdefault(index.fqn, []).append((index, info))
    mapping = getattr(md, "planner_data", None) or {}
    root: dict = {}
    for fqn, meta in md.state_dict_metadata.items():
        items = storage.get(fqn, [])
        if hasattr(meta, "chunks"):
            dtype = str(meta.properties.dtype).replace("torch.", "")
            value = TensorRef(tuple(meta.size), dtype, _chunk_reader(folder, meta, items))
        else:
            try:
                value = _read_bytes(folder, items[0][1]) if items else None
            except LoadError as e:
                value = not_loaded("", reason=str(e))
        _put(root, mapping.get(fqn) or tuple(fqn.split(".")), value)
    return _lists(root)


def _lists(node):
    """Dicts keyed 0..n-1 (how a flattened list comes back) as lists again."""
    if isinstance(node, dict):
        node = {k: _lists(v) for k, v in node.items()}
        if node and all(isinstance(k, int) for k in node) and sorted(node) == list(range(len(node))):
            return [node[i] for i in range(len(node))]
    return node


def _put(root: dict, path, value) -> None:
    node = root
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = value
    return None


def _read_slice(folder: Path, info) -> bytes:
    if getattr(info, "transform_descriptors", None):
        raise LoadError(f"stored with {list(info.transform_descriptors)}, which is not read here")
    rel = Path(info.relative_path)
    if rel.is_absolute() or ".." in rel.parts:
        raise LoadError(f"names a data file outside the checkpoint ({info.relative_path})")
    with open_regular(folder / rel) as f:
        f.seek(info.offset)
        data = f.read(info.length)
    if len(data) != info.length:
        raise LoadError(f"{info.relative_path} is shorter than its metadata says")
    return data


def _torch_bytes(data: bytes):
    from .safe_load import load_torch_bytes
    return load_torch_bytes(data)


def _read_bytes(folder: Path, info):
    return _torch_bytes(_read_slice(folder, info))


def _chunk_reader(folder: Path, meta, items):
    def read() -> torch.Tensor:
        out = torch.empty(tuple(meta.size), dtype=meta.properties.dtype)
        by_offset = {tuple(idx.offset) if idx.offset is not None else (): info for idx, info in items}
        for chunk in meta.chunks:
            info = by_offset.get(tuple(chunk.offsets)) or (items[0][1] if len(items) == 1 else None)
            if info is None:
                raise LoadError(f"a chunk at {tuple(chunk.offsets)} has no data in the checkpoint")
            part = _torch_bytes(_read_slice(folder, info))
            if not isinstance(part, torch.Tensor):
                raise LoadError("a chunk that is not a tensor")
            part = part.reshape(-1)[:int(torch.Size(chunk.sizes).numel())].reshape(tuple(chunk.sizes)) \
                if tuple(part.shape) != tuple(chunk.sizes) else part
            region = out
            for dim, (o, s) in enumerate(zip(chunk.offsets, chunk.sizes)):
                region = region.narrow(dim, o, s)
            region.copy_(part)
        return out
    return read

