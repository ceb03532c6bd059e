"""Refuse what would not fit before paying for it.

Two kinds of cost are checked here, each before anything is allocated or read:

- memory for a spec's tensors and what stepping them needs (gradient, optimizer
  state, the probe's copy and torch's temporaries), compared with the memory this
  process can still get (``MemAvailable``, a cgroup limit, ``RLIMIT_AS``/``RLIMIT_DATA``,
  or the GPU's free memory for a CUDA device);
- zip archives (``.optimlab`` sessions and torch.save files), checked from their
  central directory: member count, duplicate names, encryption, compression method,
  offsets, declared sizes and compression ratios. Nothing is decompressed until
  the directory has passed, and a member never yields more than its declared size.

Every refusal is one sentence raised as ``error`` (the caller's exception type).
"""
from __future__ import annotations

import math
import os
import zipfile

try:
    import resource
except ImportError:  # Windows: no rlimits to respect
    resource = None

from .spec import SpecError

# Copies of the parameters that stepping needs besides the parameter itself and its
# optimizer state: the gradient, the probe's copy of the parameters and torch's
# temporaries. Measured on CPU with 16-64 MB tensors (README, File formats): 2.6-4.0
# copies beside the state for every optimizer; 3 plus the state's own copies below
# keeps every measured peak under the estimate.
WORK_COPIES = 3
LOAD_FACTOR = 3  # a loaded file's tensors, the copy a check works on, the copy applied

_STATE_COPIES = {  # per-parameter state tensors the optimizer keeps (measured peaks, rounded up)
    "SGD": lambda h: 1 if h.get("momentum") else 0,
    "Adam": lambda h: 3 if h.get("amsgrad") else 2,
    "AdamW": lambda h: 3 if h.get("amsgrad") else 2,
    "Adamax": lambda h: 2,
    "NAdam": lambda h: 3,
    "RAdam": lambda h: 2,
    "Adagrad": lambda h: 1,
    "Adadelta": lambda h: 3,
    "RMSprop": lambda h: 1 + bool(h.get("momentum")) + bool(h.get("centered")),
    "Rprop": lambda h: 4,
    "ASGD": lambda h: 1,
    "Adafactor": lambda h: 1,
    "Muon": lambda h: 2,
    "SparseAdam": lambda h: 3,
    # LBFGS keeps history_size pairs of flat vectors over all parameters, plus a few more
    "LBFGS": lambda h: 2 * int(h.get("history_size", 100)) + 4,
}
_UNKNOWN_STATE = 3


def human(n: float) -> str:
    """Bytes in decimal units, as a disk or a system monitor shows them: '40 GB'."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 10 else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.0f} PB"


# ----- how much memory is there -----

def available_bytes(device: str = "cpu") -> int | None:
    """Memory this process can still allocate on ``device``; None when nobody can tell."""
    if device.startswith("cuda"):
        try:
            import torch
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:  # noqa: BLE001 - no driver answer: leave the check to torch
            return None
    found = [v for v in (_meminfo_available(), _cgroup_headroom(), _rlimit_headroom()) if v is not None]
    if found:
        return max(0, min(found))
    try:  # no /proc (macOS, BSD): free physical pages, where the platform reports them
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _meminfo_available() -> int | None:
    text = _read("/proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _cgroup_headroom() -> int | None:
    """A container's limit minus what it uses (page cache it can drop does not count)."""
    for limit_f, usage_f, stat_f, cache_key in (
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "inactive_file"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
             "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file")):
        limit, usage = (_read(limit_f) or "").strip(), (_read(usage_f) or "").strip()
        if not limit.isdigit() or not usage.isdigit() or int(limit) >= 1 << 60:
            continue
        cache = 0
        for line in (_read(stat_f) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == cache_key and value.strip().isdigit():
                cache = int(value)
        return int(limit) - (int(usage) - cache)
    return None


def _rlimit_headroom() -> int | None:
    """What ``ulimit -v`` / ``-d`` still allows this process (a big allocation counts in both)."""
    status = _read("/proc/self/status") or ""
    used = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmSize", "VmData") and value.split():
            used[key] = int(value.split()[0]) * 1024
    out = []
    if resource is None:
        return None
    for which, key in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft, _ = resource.getrlimit(which)
        if soft != resource.RLIM_INFINITY and key in used:
            out.append(soft - used[key])
    return min(out) if out else None


def check_bytes(need: int, what: str, device: str = "cpu", error: type[Exception] = SpecError) -> None:
    """Refuse ``need`` bytes on ``device`` when they are not available: "X needs 40 GB; 23 GB are available"."""
    avail = available_bytes(device)
    if avail is not None and need > avail:
        raise error(f"{what} needs {human(need)}; {human(avail)} are available")


# ----- what a spec needs -----

def copies_per_parameter(optimizer: str, hparams_per_group) -> int:
    """Copies of a parameter that stepping keeps alive at once (the parameter itself included)."""
    state = _STATE_COPIES.get(optimizer, lambda h: _UNKNOWN_STATE)
    worst = max((state(h) for h in hparams_per_group), default=state({}))
    return 1 + WORK_COPIES + worst


def tensor_bytes(t) -> int:
    """Bytes of a TensorSpec's values."""
    return math.prod(t.shape) * _itemsize(t)


def _itemsize(t) -> int:
    return {"float64": 8, "bfloat16": 2, "float16": 2}.get(t.dtype, 4)


def stepping_bytes(t, copies: int) -> int:
    """Bytes a tensor needs while it is stepped: ``copies`` of its values, plus a sparse
    manual gradient's int64 indices (one per dimension per element; made, coalesced and
    copied, so three times)."""
    b = tensor_bytes(t)
    need = b * copies
    if getattr(getattr(t, "grad", None), "sparse", False):
        need += 3 * (b // _itemsize(t)) * 8 * len(t.shape)
    return need


def check_tensors_fit(optimizer: str, tensors, hparams_per_group, device: str,
                      error: type[Exception] = SpecError) -> None:
    """Refuse tensors whose values, gradients and ``optimizer``'s state would not fit in memory.

    Called before any of them is created, so a refusal allocates nothing.
    """
    tensors = list(tensors)
    if not tensors:
        return
    copies = copies_per_parameter(optimizer, hparams_per_group)
    sizes = {t.name: stepping_bytes(t, copies) for t in tensors}
    total = sum(sizes.values())
    biggest = max(sizes, key=sizes.get)
    if device != "cpu":  # tensors are made on the CPU one at a time, then moved
        check_bytes(2 * max(tensor_bytes(t) for t in tensors), f"{biggest} (made on the CPU first)", "cpu", error)
    if len(tensors) == 1:
        what = f"{biggest} {list(tensors[0].shape)} needs {human(total)} with its gradient and {optimizer}'s state"
    else:
        what = (f"The {len(tensors)} tensors need {human(total)} with their gradients and {optimizer}'s state "
                f"({biggest} alone {human(sizes[biggest])})")
    avail = available_bytes(device)
    if avail is not None and total > avail:
        where = "" if device == "cpu" else f" on {device}"
        raise error(f"{what}; {human(avail)} are available{where}")


# ----- zip archives, from their directory -----

MAX_RATIO = 200  # deflate reaches ~1000:1 on zeros; files saved here are stored (1:1)
RATIO_FLOOR = 1 << 20  # members smaller than this cannot hurt, whatever their ratio
_DIRECTORY_ENTRY = 1024  # generous bytes per central-directory entry (46 + name + extras)
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
_METHOD_NAMES = {1: "Shrink", 6: "Implode", 8: "Deflate", 9: "Deflate64", 12: "BZIP2", 14: "LZMA", 93: "Zstandard",
                 95: "XZ", 99: "AES"}
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, IndexError, KeyError,
               NotImplementedError, RuntimeError, UnicodeDecodeError, OverflowError)


def open_zip(fp, name: str, max_members: int, caps: dict | None = None,
             error: type[Exception] = ValueError) -> zipfile.ZipFile:
    """A ZipFile over the seekable binary ``fp`` whose central directory passed every check.

    Nothing is decompressed here. ``caps`` maps member names to their largest allowed
    size. The total the caller will read is ``sum(i.file_size for i in z.infolist())``.
    """
    size = fp.seek(0, os.SEEK_END)
    end = _end_record(fp, name, error)
    if end is not None:
        entries, cd_size, cd_offset, location = end
        if entries > max_members or cd_size > max_members * _DIRECTORY_ENTRY:
            raise error(f"{name} lists {entries} members; at most {max_members} are allowed")
        if cd_size + cd_offset > location:
            raise error(f"{name} is damaged: its end-of-archive record points outside the file")
    try:
        z = zipfile.ZipFile(fp)
    except _ZIP_ERRORS as e:
        raise error(f"{name} is damaged: {_gist(e)}") from None
    try:
        _check_members(z, name, size, max_members, caps or {}, error)
    except BaseException:
        z.close()
        raise
    return z


def _end_record(fp, name, error):
    """(entries, directory size, directory offset, record position) before ZipFile reads the directory."""
    find = getattr(zipfile, "_EndRecData", None)  # private, but stable since Python 2.6
    if find is None:
        return None
    try:
        rec = find(fp)
    except _ZIP_ERRORS as e:
        raise error(f"{name} is damaged: {_gist(e)}") from None
    if rec is None:
        raise error(f"{name} is damaged: it has no end-of-archive record")
    return rec[zipfile._ECD_ENTRIES_TOTAL], rec[zipfile._ECD_SIZE], rec[zipfile._ECD_OFFSET], rec[zipfile._ECD_LOCATION]


def _check_members(z: zipfile.ZipFile, name: str, size: int, max_members: int, caps: dict, error) -> None:
    infos = z.infolist()
    if len(infos) > max_members:
        raise error(f"{name} has {len(infos)} members; at most {max_members} are allowed")
    seen = set()
    for i in infos:
        if i.filename in seen:
            raise error(f"{name} holds two members named {i.filename}: it is damaged or was doctored")
        seen.add(i.filename)
        if i.flag_bits & 0x1:
            raise error(f"{name} is encrypted (member {i.filename}); optimlab reads only unencrypted files")
        if i.compress_type not in _METHODS:
            method = _METHOD_NAMES.get(i.compress_type, "unknown")
            raise error(f"{name} uses compression method {i.compress_type} ({method}) for {i.filename}; "
                        "optimlab reads only stored or deflated members")
        if i.header_offset < 0 or i.header_offset + i.compress_size > size:
            raise error(f"{name} is damaged: member {i.filename} lies beyond the end of the file")
        cap = caps.get(i.filename)
        if cap is not None and i.file_size > cap:
            raise error(f"{name} has a {i.filename} of {human(i.file_size)}; at most {human(cap)} are allowed")
        if i.file_size > RATIO_FLOOR and i.file_size > MAX_RATIO * max(i.compress_size, 1):
            raise error(f"{name} looks like a zip bomb: member {i.filename} would expand from "
                        f"{human(i.compress_size)} to {human(i.file_size)}")
    if sum(i.compress_size for i in infos) > size:
        raise error(f"{name} is damaged or a zip bomb: its members overlap")


def read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, error: type[Exception] = ValueError) -> bytes:
    """A member's bytes; never more than its declared (already checked) size, CRC verified."""
    try:
        with z.open(info) as m:
            return m.read()
    except _ZIP_ERRORS as e:
        raise error(f"{name} is damaged: {_gist(e)}") from None


def _gist(e: BaseException) -> str:
    text = " ".join(str(e).split())[:200]
    return text or type(e).__name__
