"""Writing a file atomically, and the errors that say why a path cannot be written.

:func:`write_atomically` writes a temporary file next to the target, flushes and fsyncs it, then renames it
over the target (``os.replace``, atomic on POSIX and Windows) and fsyncs the folder: a crash or a kill at
any moment leaves either the old file or the new one, never a mix. :func:`check_writable` makes the same
moves up front, before hours of training depend on them. Every ``OSError`` names the user's path (never the
temporary file), the cause and the fix. :mod:`xpnet.io` (the model file) and the ONNX export write through
here.
"""

from __future__ import annotations

import errno
import os
import tempfile


def write_atomically(path, fill) -> None:
    """Call ``fill(f)`` on a new binary file beside ``path``, then put it in ``path``'s place in one step.

    A crash or an error in ``fill`` leaves the previous file, if any, as it was. ``OSError`` names ``path``.
    """
    path = os.fspath(path)
    folder = check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as exc:
        raise _save_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _save_error(path, exc) from None
        raise
    _fsync_dir(folder)


def check_writable(path) -> str:
    """Check that :func:`write` can write ``path``, before hours of training depend on it; returns its folder.

    Raises ``IsADirectoryError``, ``FileNotFoundError`` (no such folder), ``NotADirectoryError`` (a file
    where a folder should be) or ``PermissionError``, each naming ``path``, the cause and the fix. The check
    makes and removes a temporary file in the folder, which is what :func:`write` will do, so a read-only or
    pseudo file system (``/proc``) is caught too.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save to {path}: it is a folder; give a file name such as "
                                f"{os.path.join(path, 'model.npz')}")
    if not os.path.isdir(folder):
        raise _no_folder(path, folder)
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _save_error(path, exc) from None
    return folder


def _no_folder(path, folder) -> OSError:
    """Why ``folder`` cannot hold ``path``: it is missing, or it (or a folder above it) is a file."""
    above = folder
    while not os.path.lexists(above) and os.path.dirname(above) != above:
        above = os.path.dirname(above)
    if os.path.exists(above) and not os.path.isdir(above):
        return _os_error(errno.ENOTDIR, f"cannot save to {path}: {above} is a file, not a folder; "
                                        f"choose another path")
    return _os_error(errno.ENOENT, f"cannot save to {path}: the folder {folder} does not exist; create it "
                                   f"first (mkdir -p {folder}) or save elsewhere")


# errno of a failed write -> what it means for the folder, and what to do. The bare strerror ("No such
# file or directory" for a folder that is there) leaves the user guessing.
_FOLDER_FIXES = {
    errno.EACCES: "this user may not create files in {folder}; save into a folder you can write, or change "
                  "that folder's permissions",
    errno.EROFS: "{folder} is on a read-only file system; save into a folder on a writable disk",
    errno.ENOENT: "{folder} takes no new files: it is not a folder on disk (a virtual file system such as /proc "
                  "or /sys); save into an ordinary folder, such as the current one",
    errno.ENAMETOOLONG: "the name is too long for the file system once save adds the 14 characters of its "
                        "temporary file (.NAME.XXXXXXXX.tmp); choose a shorter name",
    errno.ENOSPC: "the disk holding {folder} is full; free some space, or save elsewhere",
}
_FOLDER_FIXES[errno.EPERM] = _FOLDER_FIXES[errno.EACCES]
if hasattr(errno, "EDQUOT"):
    _FOLDER_FIXES[errno.EDQUOT] = "the disk quota for {folder} is used up; free some space, or save elsewhere"


def _save_error(path, exc: OSError) -> OSError:
    """The same kind of OSError (same errno), naming the user's path rather than save's temporary file,
    the cause and the fix."""
    folder = os.path.dirname(os.path.abspath(path))
    if exc.errno == errno.ENOENT and not os.path.isdir(folder):  # the folder went away meanwhile
        return _no_folder(path, folder)
    cause = exc.strerror or str(exc)
    fix = _FOLDER_FIXES.get(exc.errno)
    text = f"cannot save to {path}: {cause}" if fix is None else \
        f"cannot save to {path} ({cause}): {fix.format(folder=folder)}"
    return _os_error(exc.errno, text, type(exc))


def _os_error(code, text: str, kind=None) -> OSError:
    """An OSError of the class ``code`` maps to (``FileNotFoundError``...), whose ``errno`` is ``code`` and whose
    message is ``text`` alone: the CLI prints it on one line without a leading "[Errno N]"."""
    exc = (kind or type(OSError(code, "")))(text)
    exc.errno = code
    return exc


def _file_mode(path) -> int:
    # mkstemp makes the file 0600; give the result the mode a plain open() would have (or the old file's)
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder) -> None:
    # Makes the rename itself durable. Not every platform lets a folder be opened (Windows): skip there.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
