"""One sweep process per sweep folder (``<folder>/sweep.lock``), one process per trial
(``trials/<name>/trial.lock``): exclusive ``flock`` locks.

The holder writes its pid, host, command and start time into the file, so a second ``sweep``
on the same folder refuses at once naming the running one. The kernel drops the lock when the
holder's process ends, however it ends (kill -9 included), so a dead holder never leaves the
folder stuck: the file stays, with the last holder's details, and the next sweep takes it.
(On NFS, Linux maps flock to fcntl locks, which the NFS lock manager keeps.)

The trial lock covers the seconds after a driver is killed: its Ray workers notice that their
node manager is gone and exit, but one may still be training when the resumed sweep starts the
same trial; the new attempt waits for it instead of writing the same state file beside it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from harness.errors import UserError

LOCK_NAME = "sweep.lock"


class SweepLock:
    def __init__(self, root: Path):
        self.path = Path(root) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self, name: str) -> None:
        """Take the lock or raise a `UserError` naming the process that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot create {self.path} ({exc.strerror or exc}); choose a --results-dir you can "
                            "write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise UserError(f"the sweep {name!r} is already running ({holder}); wait for it to end or stop it, "
                            f"then resume with `run_bench.py sweep --resume {name}` (lock: {self.path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
                                ).encode() + b"\n")
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = None

    @property
    def held(self) -> bool:
        return self.fd is not None


@contextlib.contextmanager
def trial_lock(folder: Path, timeout_s: float = 300.0) -> Iterator[None]:
    """Hold ``folder/trial.lock`` while the trial runs; wait (up to ``timeout_s``) for another
    process that still holds it. RuntimeError when it never lets go."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "trial.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, told = time.monotonic() + timeout_s, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{folder.name}: another process still runs this trial after {timeout_s:.0f}s "
                                       f"({_describe(os.pread(fd, 4096, 0))})") from None
                if not told:
                    print(f"note: {folder.name}: waiting for a process of an earlier attempt to exit "
                          f"({_describe(os.pread(fd, 4096, 0))})", file=sys.stderr, flush=True)
                    told = True
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": "trial",
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode(), 0)
        yield
    finally:
        os.close(fd)


def _describe(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode() or "{}")
        return f"pid {info['pid']} on {info['host']} since {info['started']}: {info['command']}"
    except (ValueError, KeyError):
        return "its holder did not write its details yet"
