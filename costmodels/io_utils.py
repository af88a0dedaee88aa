"""Writing outputs: a reader never sees a half-written file, a command's files appear together or not at
all, and a bad destination is a one-line ``OutputError`` (exit code 2), never a traceback.

- ``atomic_write_text`` / ``atomic_write_bytes``: one file, through a temporary file beside it and a
  rename. The file gets the mode a plain ``open`` would give it (0666 less the umask), not the
  temporary file's 0600.
- ``check_output_file`` / ``check_output_folder``: refuse a destination that cannot be written before a
  command spends minutes on its work.
- ``output_folder(path)``: the files of one command are written into a temporary folder beside (or,
  when it exists, inside) ``path`` and moved into place only when all are written; files already in
  ``path`` that the command does not write are left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from costmodels.errors import CostModelError

_STAGING_PREFIX = ".costmodel-staging-"


class OutputError(CostModelError):
    """An output file or folder that cannot be written; the message names it and says why."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _os_problem(exc: OSError) -> str:
    return f"cannot write: {exc.strerror or exc}"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, "is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(path, _os_problem(exc)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(path, _os_problem(exc)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _nearest_existing(path: Path) -> Path:
    for folder in (path, *path.parents):
        if os.path.lexists(folder):
            return folder
    return Path(".")


def _check_writable_folder(path: Path, named: Path) -> None:
    """``named`` (the user's destination) will be created inside the existing ``path``: try it (permission
    bits do not tell for root, read-only mounts or /proc)."""
    if not path.is_dir():
        raise OutputError(named, f"'{path}' is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=path))
    except OSError as exc:
        raise OutputError(named, f"cannot write: folder '{path}' is not writable ({exc.strerror or exc})") from None


def check_output_file(path: str | Path) -> None:
    """Refuse an output file that is a folder or whose folder cannot be made or written."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, "is a folder; give a file name")
    if os.path.lexists(path) and not (path.is_file() or path.is_symlink()):
        raise OutputError(path, "is not a regular file (a device, pipe or socket)")
    _check_writable_folder(_nearest_existing(path.parent), path)


def check_output_folder(path: str | Path) -> None:
    """Refuse an output folder that is a file, the filesystem root, or cannot be made or written."""
    path = Path(path)
    if path.resolve() == Path(path.resolve().anchor):
        raise OutputError(path, "is the filesystem root; give a folder for the outputs")
    if os.path.lexists(path) and not path.is_dir():
        raise OutputError(path, "is a file, not a folder; give a folder for the outputs")
    _check_writable_folder(_nearest_existing(path), path)


@contextmanager
def output_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder; write every output of a command there. When the block ends
    normally, the files move into ``path`` (created if missing); when it raises, they are deleted and
    ``path`` is as it was. Only plain files directly in the staging folder are moved."""
    path = Path(path)
    check_output_folder(path)
    exists = path.is_dir()
    try:
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=path if exists else _nearest_existing(path)))
        os.chmod(staging, 0o777 & ~_umask())
    except OSError as exc:
        raise OutputError(path, _os_problem(exc)) from None
    try:
        yield staging
        if exists:
            _move_files(staging, path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, path)
    except OSError as exc:
        raise OutputError(path, _os_problem(exc)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_files(staging: Path, target: Path) -> None:
    """Every destination is checked before the first file moves, so a folder standing where an output
    should go stops them all. Files move in the order they were written (an index after its files)."""
    names = [p.name for p in sorted(staging.iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name))]
    for name in names:
        destination = target / name
        if destination.is_dir():
            raise OutputError(destination, "is a folder; cannot write the output file there (move it away)")
        if os.path.lexists(destination) and not (destination.is_file() or destination.is_symlink()):
            raise OutputError(destination, "is not a regular file; cannot write the output file there")
    for name in names:
        os.replace(staging / name, target / name)
