"""A durable results cache: one SQLite file (standard library), shared by every build on the machine.

An entry is keyed by ``cache_key``: a SHA-256 over the workload's content hash, the spec's content
hash (every spec file), and the backend's name, version and mapper settings. Change any of them and
the key changes, so a stale result is never served. Values are JSON (never pickles).

Durability and concurrency: the database runs in WAL mode with a busy timeout; every ``put`` is its
own committed transaction, so a build killed at any moment (even ``kill -9``) keeps everything it
finished, and several processes may read and write at once.

Where: ``--cache PATH``, else ``$COSTMODEL_CACHE``, else ``results.sqlite`` in the user cache folder
(``platformdirs.user_cache_dir("haloc-costmodels")``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from costmodels.errors import CostModelError

ENV_VAR = "COSTMODEL_CACHE"
APP_NAME = "haloc-costmodels"
FILE_NAME = "results.sqlite"
SCHEMA_VERSION = 1
KEY_VERSION = "costmodels-cache-v1"
BUSY_TIMEOUT_S = 60.0
EXPORT_FORMATS = ("jsonl", "csv")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key             TEXT PRIMARY KEY,
    workload_key    TEXT NOT NULL,
    workload        TEXT NOT NULL,
    spec            TEXT NOT NULL,
    spec_hash       TEXT NOT NULL,
    backend         TEXT NOT NULL,
    backend_version TEXT NOT NULL,
    settings        TEXT NOT NULL,
    created         REAL NOT NULL,
    value           TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class CacheError(CostModelError):
    """The cache file cannot be opened or read; the message names it."""


class CacheSchemaError(CacheError):
    """A cache written by another version of this toolkit (another schema): ``clear`` starts it afresh."""


def default_cache_path() -> Path:
    """``$COSTMODEL_CACHE`` (a file, or a folder to hold ``results.sqlite``), else the user cache folder."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        return path / FILE_NAME if path.is_dir() else path
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME)) / FILE_NAME


def cache_key(workload, spec, backend) -> str:
    """The key of one evaluation: workload content, spec files, backend name + version + settings."""
    parts = (KEY_VERSION, workload.key, spec.content_hash, backend.name, backend.version, backend.settings_key)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    workload_key: str
    workload: str
    spec: str
    spec_hash: str
    backend: str
    backend_version: str
    settings: str
    created: float
    value: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "workload_key": self.workload_key, "workload": self.workload, "spec": self.spec,
                "spec_hash": self.spec_hash, "backend": self.backend, "backend_version": self.backend_version,
                "settings": self.settings, "created": self.created, "value": self.value}


@dataclass(frozen=True)
class CacheInfo:
    path: Path
    entries: int
    size_bytes: int
    by_backend: dict[str, int]
    by_spec: dict[str, int]
    oldest: float | None
    newest: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "entries": self.entries, "size_bytes": self.size_bytes,
                "by_backend": self.by_backend, "by_spec": self.by_spec, "oldest": self.oldest, "newest": self.newest}


class ResultsCache:
    """The results cache at ``path`` (default: ``default_cache_path()``). Safe to use from several
    processes at once; one object should stay within one process (it opens its connection lazily,
    so it may be created before a fork and used after)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    # -- connection -------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        conn = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._refuse_other_schema(conn)   # before anything in the file changes
            mode = _switch_to_wal(conn)
            if str(mode).lower() != "wal":
                raise CacheError(f"{self.path}: cannot switch the cache to WAL mode (got {mode})")
            # WAL + NORMAL: a committed transaction survives the process being killed at any moment;
            # only an operating-system crash may lose the last few.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise CacheError(f"{self.path}: cannot open the results cache: {exc}") from None
            if isinstance(exc, OSError):
                raise CacheError(f"{self.path}: cannot open the results cache: {exc.strerror or exc}") from None
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _refuse_other_schema(self, conn: sqlite3.Connection) -> None:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
            return
        row = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if row is not None and row[0] != str(SCHEMA_VERSION):
            raise CacheSchemaError(f"{self.path}: cache schema {row[0]} is not supported (expected "
                                   f"{SCHEMA_VERSION}); clear it with `costmodel cache --cache {self.path} clear`")

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._connection().execute(sql, tuple(params))
            except sqlite3.DatabaseError as exc:
                raise CacheError(f"{self.path}: results cache error: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> "ResultsCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:   # a cache travels as its path only
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    def __repr__(self) -> str:
        return f"ResultsCache({str(self.path)!r})"

    # -- entries ----------------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        row = self._execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._decode(key, row[0])

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self._execute(f"SELECT key, value FROM results WHERE key IN ({marks})", chunk):
                found[key] = self._decode(key, value)
        return found

    def __contains__(self, key: str) -> bool:
        return self._execute("SELECT 1 FROM results WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        return int(self._execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def put(self, key: str, value: dict[str, Any], *, workload_key: str = "", workload: str = "", spec: str = "",
            spec_hash: str = "", backend: str = "", backend_version: str = "", settings: str = "") -> None:
        """Store ``value`` (JSON-able) under ``key``; committed before this returns."""
        text = json.dumps(value, sort_keys=True, allow_nan=False, default=json_default)
        self._execute("INSERT OR REPLACE INTO results (key, workload_key, workload, spec, spec_hash, backend, "
                      "backend_version, settings, created, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (key, workload_key, workload, spec, spec_hash, backend, backend_version, settings,
                       time.time(), text))

    def entries(self) -> Iterator[CacheEntry]:
        cursor = self._execute("SELECT key, workload_key, workload, spec, spec_hash, backend, backend_version, "
                               "settings, created, value FROM results ORDER BY spec, backend, workload, key")
        for row in cursor.fetchall():
            yield CacheEntry(*row[:9], value=self._decode(row[0], row[9]))

    def info(self) -> CacheInfo:
        entries = len(self)
        by_backend = {f"{b} {v}": n for b, v, n in self._execute(
            "SELECT backend, backend_version, COUNT(*) FROM results GROUP BY backend, backend_version ORDER BY 1, 2")}
        by_spec = {f"{s} ({h})": n for s, h, n in self._execute(
            "SELECT spec, spec_hash, COUNT(*) FROM results GROUP BY spec, spec_hash ORDER BY 1, 2")}
        oldest, newest = self._execute("SELECT MIN(created), MAX(created) FROM results").fetchone()
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return CacheInfo(self.path, entries, size, by_backend, by_spec, oldest, newest)

    def clear(self) -> int:
        """Remove every entry; returns how many there were. A cache of another schema is started afresh."""
        try:
            count = len(self)
        except CacheSchemaError:
            count = self._drop_foreign_schema()
        self._execute("DELETE FROM results")
        try:   # give the space back unless another process is busy with the file (then it is reused)
            self._execute("PRAGMA busy_timeout = 1000")
            self._execute("VACUUM")
        except CacheError:
            pass
        finally:
            self._execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return count

    def _drop_foreign_schema(self) -> int:
        """Drop the tables of a cache of another schema version (its entries cannot be read here anyway);
        returns how many entries it held, when that can be told."""
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                try:
                    count = int(conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
                except sqlite3.DatabaseError:
                    count = 0
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DROP TABLE IF EXISTS results")
                conn.execute("DELETE FROM meta WHERE name = 'schema'")
                conn.execute("COMMIT")
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"{self.path}: cannot clear the results cache: {exc}") from None
        return count

    def export(self, path: str | os.PathLike, fmt: str | None = None) -> int:
        """Write every entry to ``path`` as JSON lines (default) or CSV (``fmt="csv"`` or a ``.csv``
        name); returns the number of entries written."""
        from costmodels.io_utils import atomic_write_text

        path = Path(path)
        fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
        if fmt not in EXPORT_FORMATS:
            raise CostModelError(f"unknown export format '{fmt}'; allowed: {', '.join(EXPORT_FORMATS)}")
        entries = list(self.entries())
        if fmt == "jsonl":
            text = "".join(json.dumps(e.to_dict(), sort_keys=True) + "\n" for e in entries)
        else:
            import io

            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["key", "workload_key", "workload", "spec", "spec_hash", "backend", "backend_version",
                             "settings", "created", "cycles", "energy_pj", "utilization", "mapping"])
            for e in entries:
                writer.writerow([e.key, e.workload_key, e.workload, e.spec, e.spec_hash, e.backend,
                                 e.backend_version, e.settings, f"{e.created:.3f}", e.value.get("cycles", ""),
                                 e.value.get("energy_pj", ""), e.value.get("utilization", ""),
                                 e.value.get("mapping", "")])
            text = buffer.getvalue()
        atomic_write_text(path, text)
        return len(entries)

    def _decode(self, key: str, text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CacheError(f"{self.path}: entry {key[:16]} is not valid JSON ({exc}); clear the cache") from None
        if not isinstance(value, dict):
            raise CacheError(f"{self.path}: entry {key[:16]} is not a JSON object; clear the cache")
        return value


def json_default(value: Any) -> Any:
    """numpy scalars and the like: their plain Python value."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """Two processes opening a new cache at once can race on the journal-mode change, where SQLite
    answers "locked" at once instead of waiting on the busy timeout: retry for that long."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.01
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
