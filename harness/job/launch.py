"""Start a data-parallel run: this process becomes rank 0, the other ranks are spawned here.

`run_data_parallel` is what ``--workers N`` does (the CLI and a sweep trial alike, through
`harness.job.run.run_job`). Rank 0 stays the calling process, so its reports (a sweep trial's
``tune.report``), records and exceptions are the ones a one-process run has: a bad input is
one ``error:`` line and exit code 2, an interrupted run resumes from ``state.pt``. The other
ranks are ``torch.multiprocessing`` spawns that rendezvous through a TCP store on a free local
port (the operating system picks it, so parallel runs never collide). Backend: NCCL on CUDA,
one GPU per rank (rank r on ``cuda:r`` of the visible devices); gloo on CPU.

Failures end the whole run: when rank 0 stops (an exception, Ctrl-C) the other ranks are
terminated; when another rank dies, rank 0, which may be waiting in a collective that will
never complete, is given a grace period to stop by itself (the same bad input fails every
rank alike) and is otherwise ended with that rank's error. A spawned rank also dies with its
parent (``PR_SET_PDEATHSIG``), so a killed run leaves no orphans.

Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` set) nothing is spawned: `join_torchrun`
joins the group torchrun made.
"""
from __future__ import annotations

import os
import pickle
import sys
import threading
from datetime import timedelta
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from harness.errors import UserError
from harness.train.distributed import World, current_world
from harness.train.engine import TrainingDiverged

T = TypeVar("T")
GRACE_S = 30.0  # how long rank 0 may take to stop by itself after another rank failed
HOST = "127.0.0.1"


def plan_backend(workers: int, device: str, spawn: bool = True) -> str:
    """``nccl`` or ``gloo`` for ``workers`` ranks on ``device`` (--device); UserError before any start."""
    from harness.train.device import select_device

    chosen = select_device(device)
    if chosen.type != "cuda":
        return "gloo"
    if not spawn:  # torchrun placed the processes, maybe on several machines
        return "nccl"
    if chosen.index is not None:
        raise UserError(f"--device {device} names one GPU, but --workers {workers} runs one process per GPU "
                        "(rank r on cuda:r); pass --device cuda (limit the GPUs with CUDA_VISIBLE_DEVICES)")
    count = torch.cuda.device_count()
    if workers > count:
        raise UserError(f"--workers {workers} needs {workers} GPUs (one per process) and {count} are visible; "
                        f"pass --workers {count} or fewer, or --device cpu")
    return "nccl"


def _init(rank: int, size: int, backend: str, store: Any) -> None:
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, store=store, rank=rank, world_size=size, timeout=timedelta(hours=2))


def run_data_parallel(workers: int, device: str, main: Callable[[World], T], child: Callable[..., None],
                      child_args: tuple = ()) -> T:
    """Run ``main(world)`` here as rank 0 of ``workers`` ranks and ``child(*child_args, world)``
    in each spawned rank; returns what ``main`` returned. ``child`` must be importable by name
    (a module-level function); its arguments may hold pruner configs of ``--plugin`` files."""
    from harness.prune.plugins import plugin_files

    backend = plan_backend(workers, device)
    store = dist.TCPStore(HOST, 0, workers, is_master=True, wait_for_workers=False)
    threads = max(1, torch.get_num_threads() // workers)  # the ranks share this process's cores
    payload = pickle.dumps((child, child_args))
    context = torch.multiprocessing.start_processes(
        _child_entry, args=(workers, backend, store.port, threads, plugin_files(), payload), nprocs=workers - 1,
        join=False, start_method="spawn")
    watchdog = _Watchdog(context)
    watchdog.start()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _init(0, workers, backend, store)
        result = main(current_world())
        watchdog.main_done.set()
        context.join()  # the others end right after the run's last barrier
        return result
    except RuntimeError as exc:
        # a collective broken by a dead rank fails here (a RuntimeError of torch.distributed): that
        # rank's error is the cause to show; a diverged loss stops every rank alike and stays itself
        if not isinstance(exc, TrainingDiverged) and _a_rank_failed(watchdog, context):
            raise watchdog.error() from exc
        raise
    finally:
        watchdog.main_done.set()
        # the other ranks end first: after a failure here they may sit in a collective, and
        # destroying this rank's group under a live NCCL peer can block
        for process in context.processes:
            if process.is_alive():
                process.terminate()
        for process in context.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
        if dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(before)


def _a_rank_failed(watchdog: "_Watchdog", context: Any) -> bool:
    """Whether another rank failed (the watchdog then holds its error). A rank that has exited
    with an error is waited for until the watchdog has read that error, however loaded the
    machine (measured: over 5 s with the cores busy); otherwise 5 s decide."""
    if watchdog.failed.wait(5.0):
        return True
    if any(process.exitcode not in (None, 0) for process in context.processes):
        return watchdog.failed.wait(GRACE_S)
    return False


def _child_entry(index: int, size: int, backend: str, port: int, threads: int, plugins: dict[str, str],
                 payload: bytes) -> None:
    """A spawned rank (``index + 1``): join the group, then run the job's child function."""
    _die_with_parent()
    from harness.prune.plugins import load_plugin_files

    load_plugin_files(plugins)  # before unpickling: a plugin's config classes live in its module
    child, args = pickle.loads(payload)
    torch.set_num_threads(threads)
    sys.stdout = open(os.devnull, "w")  # rank 0 prints the run's lines once; errors still reach stderr
    rank = index + 1
    _init(rank, size, backend, dist.TCPStore(HOST, port, size, is_master=False))
    try:
        child(*args, current_world())
    finally:
        dist.destroy_process_group()


def _die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux; elsewhere a no-op), even mid-collective."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Watchdog(threading.Thread):
    """Notices a spawned rank that failed; ends this process when rank 0 does not stop by itself."""

    def __init__(self, context: Any):
        super().__init__(daemon=True, name="data-parallel-watchdog")
        self.context = context
        self.main_done = threading.Event()
        self.failed = threading.Event()
        self.failure = ""

    def run(self) -> None:
        while not self.main_done.is_set():
            try:
                if self.context.join(timeout=0.5):
                    self.failure = "a process stopped before the run's end without an error"
                    break
            except Exception as exc:  # noqa: BLE001 - ProcessRaisedException, ProcessExitedException
                self.failure = str(exc).strip()
                break
        else:
            return
        self.failed.set()
        if self.main_done.wait(GRACE_S):  # rank 0 stopped too (a bad input fails every rank alike)
            return
        error = self.error()
        print(f"error: {error}", file=sys.stderr, flush=True)
        os._exit(2 if isinstance(error, UserError) else 1)

    def error(self) -> Exception:
        """The failed rank's error: its UserError as one, anything else with its traceback."""
        last = ([line for line in self.failure.splitlines() if line.strip()] or [self.failure])[-1]
        if "UserError: " in last:
            return UserError(last.split("UserError: ", 1)[1])
        return RuntimeError(f"a data-parallel process failed: {self.failure}")


def join_torchrun(workers: int, device: str) -> World:
    """Join the process group ``torchrun`` set up (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT);
    the world it started must be the run's ``--workers`` (or --workers left at 1)."""
    size = int(os.environ["WORLD_SIZE"])
    if workers not in (1, size):
        raise UserError(f"--workers {workers}, but torchrun started {size} processes; pass --workers {size} or omit it")
    backend = plan_backend(size, device, spawn=False)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
    dist.init_process_group(backend, init_method="env://", timeout=timedelta(hours=2))
    world = current_world()
    if not world.main:
        sys.stdout = open(os.devnull, "w")  # rank 0 prints the run's lines once
    return world


def torchrun_world_size() -> int:
    """The world size ``torchrun`` gave this process (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) if "RANK" in os.environ else 1
