"""Where a load may read and a save may write, and how a save writes.

Every reader (torch files, sessions, the CLI's --load-* options) asks :func:`readable`
or :func:`open_regular`: a missing file, folder, FIFO, device, socket or symlink loop is
refused in one sentence, and a FIFO is never opened for reading (it could block for
ever). Every writer goes through :func:`atomic_write`: regular files or new names only,
symlinks written through, modes kept, temp files of killed saves cleaned up.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import time
from pathlib import Path


class LoadError(ValueError):
    """A file that cannot be loaded into this session; the message names why."""


# ----- writing -----

STALE_TEMP_SECONDS = 600  # a temp file untouched this long is a killed save's, whoever wrote it


class SaveError(OSError):
    """A file that cannot be written where asked; the message is one sentence."""


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return kind
    return "a special file"


def save_target(path) -> Path:
    """The regular file (or new name) a save to ``path`` writes, symlinks followed.

    Refuses, in one sentence naming ``path``: an empty name, a name ending in a slash,
    anything that exists and is not a regular file (device, FIFO, socket, folder), a
    symlink loop, a file the user may not write, and a missing or read-only folder.
    """
    text = os.fspath(path)
    if not text:
        raise SaveError("Cannot save: no file name was given")
    if text.endswith(("/", os.sep)):
        raise SaveError(f"Cannot save to {text}: a name ending in a slash is a folder, not a file")
    try:
        st = os.stat(text)  # follows symlinks: what a save would overwrite
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise SaveError(f"Cannot save to {text}: {_stat_problem(e)}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise SaveError(f"Cannot save to {text}: it is {_kind(st.st_mode)}, not a regular file")
    if st is not None and not os.access(text, os.W_OK):
        raise SaveError(f"Cannot save to {text}: the file is read-only")
    target = Path(os.path.realpath(text))
    folder = target.parent
    shown = folder if os.path.islink(text) else Path(text).parent  # the folder as the user named it
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise SaveError(f"Cannot save to {text}: the folder {shown} {what}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SaveError(f"Cannot save to {text}: the folder {shown} is read-only")
    return target


def _stat_problem(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "it is a symlink loop"
    if e.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return e.strerror or str(e)


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside the target, then move it into place.

    flush + fsync before ``os.replace``, fsync of the folder after it: a crash mid-save
    leaves the old file (or nothing), never a truncated file under the final name.
    A symlink stays a link and its target gets the new contents; an existing file keeps
    its mode (and owner where allowed), a new one follows the umask. Hard links to the
    old file keep the old contents: the save makes a new file (README, File formats).
    """
    target = save_target(path)
    folder = target.parent
    remove_stale_temps(folder, target.name)
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    tmp = folder / f".{_temp_stem(target.name)}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        # 0o666 and O_EXCL: the kernel applies the umask (mkstemp would make 0600)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        raise _save_error(path, e, folder) from None
    try:
        if old is not None:
            _keep_owner_and_mode(fd, old)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and not isinstance(e, SaveError):
            raise _save_error(path, e, folder) from None
        raise
    _fsync_folder(folder, path)


def _save_error(path, e: OSError, folder: Path) -> SaveError:
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return SaveError(f"Cannot save to {os.fspath(path)}: the folder {folder} is read-only")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return SaveError(f"Cannot save to {os.fspath(path)}: the disk is full")
    return SaveError(f"Cannot save to {os.fspath(path)}: {e.strerror or e}")


def _keep_owner_and_mode(fd: int, old: os.stat_result) -> None:
    if not hasattr(os, "fchmod"):  # Windows: modes are not POSIX modes
        return
    try:  # only root may give a file away; a user can still keep its group
        os.fchown(fd, old.st_uid, old.st_gid)
    except OSError:
        pass
    os.fchmod(fd, stat.S_IMODE(old.st_mode))  # after chown, which may clear setgid bits


def _fsync_folder(folder: Path, path) -> None:
    """Make the rename durable; filesystems that cannot sync a folder are skipped, I/O errors are not."""
    if os.name == "nt":
        return
    try:
        dfd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a folder we may write but not read (mode -wx): nothing to sync with
    try:
        os.fsync(dfd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise SaveError(f"Saved {os.fspath(path)}, but its folder could not be synced to disk: "
                            f"{e.strerror or e}") from None
    finally:
        os.close(dfd)


def _temp_stem(name: str) -> str:
    return name[:200]  # the temp name must stay under NAME_MAX (255)


def remove_stale_temps(folder: Path, name: str) -> list[str]:
    """Remove ``.NAME.*.tmp`` files that killed saves left: their writer (the pid in the
    name) is gone, or they have not been touched for STALE_TEMP_SECONDS. Returns their names."""
    prefix = f".{_temp_stem(name)}."
    removed = []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        middle = entry.name[len(prefix):-len(".tmp")]
        ours = _TEMP_MIDDLE.fullmatch(middle)
        if not ours and not _MKSTEMP_MIDDLE.fullmatch(middle):
            continue  # another name's temp (".a.b.…" for "a"), or not a temp at all
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if now - st.st_mtime > STALE_TEMP_SECONDS or (ours and not _alive(int(ours.group(1)))):
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except OSError:
                pass
    return removed


_TEMP_MIDDLE = re.compile(r"(\d{1,10})\.[0-9a-f]{8}")  # pid.random, written by atomic_write
_MKSTEMP_MIDDLE = re.compile(r"[a-z0-9_]{8}")  # tempfile.mkstemp's, from earlier versions


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill would end the process: age alone decides
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or we cannot tell: keep its file
    return True


# ----- reading -----

def readable(path) -> os.stat_result:
    """Refuse, in one sentence naming ``path``, anything a load should not open: an empty
    name, a missing file, a folder, FIFO, socket or device, a symlink loop. The one place
    every reader (torch files, sessions, the CLI's --load-* options) checks a path."""
    text = os.fspath(path)
    if not text:
        raise LoadError("No file name was given")
    try:
        st = os.stat(text)
    except FileNotFoundError:
        raise LoadError(f"No such file: {text}") from None
    except OSError as e:
        raise LoadError(f"Cannot open {text}: {_stat_problem(e)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise LoadError(f"Cannot open {text}: it is {_kind(st.st_mode)}, not a regular file")
    return st


def open_regular(path):
    """``path`` opened for binary reading, after :func:`readable` accepted it.

    Opened non-blocking and checked again on the open descriptor, so a FIFO swapped in
    after the check can neither block the open nor be read.
    """
    readable(path)
    text = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(text, flags)
    except OSError as e:
        raise LoadError(f"Cannot open {text}: {_stat_problem(e)}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise LoadError(f"Cannot open {text}: it is {_kind(mode)}, not a regular file")
    return os.fdopen(fd, "rb")
