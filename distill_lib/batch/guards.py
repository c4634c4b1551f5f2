"""What is checked and held before the first run starts: options, the output directory, the
Dask scheduler, and the locks that make a directory belong to one runner at a time.

Every check raises ``ValueError`` with the option, the value and what is allowed; the command
line turns that into exit code 2 with nothing run. The order in :func:`~.runner.run_notebooks`
and :func:`~.sweep.sweep` is: plan and check every run (nothing touched), check the options that
need the outside world (kernel, scheduler), then the output directory (created, probed), then
take its lock.

Locks are ``fcntl.flock`` locks on a file in the directory: the kernel releases them when their
process dies, however it dies, so a crash never leaves a directory stuck. The file holds the
holder's pid, host, command and a random token (for the refusal message, and to find a dead
holder's leftover processes, whose environment carries the token).
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import math
import os
import shlex
import socket
import stat
import struct
import sys
import uuid
from pathlib import Path

MAX_TIMEOUT_S = 30 * 24 * 3600  # 30 days; past ~1e9 s Python's own waits overflow
MIN_FREE_BYTES = 1 << 20  # an output directory with less than 1 MiB free is refused as full
CLUSTER_CONNECT_TIMEOUT_S = 5.0
DASK_DEFAULT_PORT = 8786


# ---------------------------------------------------------------- options

def check_timeout(timeout) -> float:
    """``timeout`` as seconds: a finite number > 0 and <= 30 days, else ``ValueError``."""
    allowed = f"a finite number of seconds > 0 and <= {MAX_TIMEOUT_S} (30 days)"
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(timeout, bool) or not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise ValueError(f"--timeout {_shown(timeout)} is refused: give {allowed}")
    return value


def check_jobs(jobs) -> int:
    """``jobs`` as an int >= 1, else ``ValueError``."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs {_shown(jobs)} is refused: give a whole number >= 1 (runs at once)")
    return jobs


def check_switches(**switches) -> None:
    """Each of ``switches`` must be True or False: ``force="no"`` would be true in Python."""
    for name, value in switches.items():
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False; got {type(value).__name__} {value!r}")


def check_kernel(kernel, pinned: str) -> str:
    """``kernel`` if it is ``pinned`` (the runner provides that one itself) or an installed Jupyter
    kernelspec, else ``ValueError`` listing the installed ones."""
    if kernel == pinned:
        return kernel
    if not isinstance(kernel, str) or not kernel.strip():
        raise ValueError(f"--kernel {_shown(kernel)} is refused: give a Jupyter kernel name")
    from jupyter_client.kernelspec import KernelSpecManager

    installed = KernelSpecManager().find_kernel_specs()
    if kernel not in installed and kernel.lower() not in installed:
        names = ", ".join(sorted({pinned, *installed}))
        raise ValueError(f"--kernel {kernel!r} is not an installed Jupyter kernel; known kernels: {names} "
                         f"({pinned!r}, the default, runs this same Python; `jupyter kernelspec list` "
                         "shows where the others live)")
    return kernel


def _shown(value) -> str:
    """The value as the user typed it: ``'nan'`` for a string, ``nan`` for a number."""
    return repr(value) if isinstance(value, str) else repr(str(value))


# ---------------------------------------------------------------- the output directory

def check_out_dir(out) -> Path:
    """Make sure ``out`` is (or can be made) a writable directory with room left, before any run.

    Creates it (and missing parents) and writes, syncs and removes a small probe file. On
    refusal, directories this check created are removed again, and ``ValueError`` names the
    path, the reason and what is needed.
    """
    path = Path(out)
    shown = f"--out {str(out)!r}"
    need = "give a directory that can be created and written"
    refuse_dangling_link(path, shown)
    try:
        if path.exists() and not path.is_dir():
            raise ValueError(f"{shown} exists and is not a directory; give a directory (a missing one is created)")
    except OSError as error:
        raise ValueError(f"{shown} cannot be inspected ({_reason(error)}); {need}") from None
    created = [p for p in (path, *path.parents) if not _exists(p)][::-1]  # outermost first
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _remove_dirs(created)
        raise ValueError(f"{shown} cannot be created ({_reason(error)}); {need}") from None
    try:
        _probe_write(path)
        free = _free_bytes(path)
        if free is not None and free < MIN_FREE_BYTES:
            raise ValueError(f"{shown} is on a full filesystem: {free // 1024} KiB free, at least "
                             f"{MIN_FREE_BYTES // 1024} KiB needed; free some space or choose another --out")
    except OSError as error:
        _remove_dirs(created)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ValueError(f"{shown} is on a full filesystem ({_reason(error)}); free some space or "
                             "choose another --out") from None
        raise ValueError(f"{shown} is not writable ({_reason(error)}); {need}") from None
    except ValueError:
        _remove_dirs(created)
        raise
    return path


def refuse_dangling_link(path: Path, shown: str) -> None:
    """``ValueError`` when ``path`` or a folder above it is a symbolic link to nothing: creating
    it would fail with a bare "File exists", and the link's missing target is the real problem."""
    for part in (path, *path.parents):
        if os.path.islink(part) and not os.path.exists(part):
            subject = f"{shown} is" if part == path else f"{shown} cannot be created: {str(part)!r} is"
            raise ValueError(f"{subject} a symbolic link to {os.readlink(part)!r}, which does not exist; "
                             "create that directory or give another --out")


def refuse_foreign_directory(folder: Path, what: str, marks, owner_files=()) -> None:
    """``ValueError`` unless ``folder`` is absent, empty, or was made by the runner (holds one of
    ``marks``). With ``owner_files``, only those files count: a folder holding none of them is
    usable too (the sweep directory, whose other contents the sweep never touches). Reads only;
    a folder that cannot be made (a file above it) is left to :func:`check_out_dir` to report."""
    shown = f"{what} {str(folder)!r}"
    refuse_dangling_link(Path(folder), shown)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{shown} exists and is not a directory; choose another --out")
    try:
        names = sorted(entry.name for entry in os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as error:
        raise ValueError(f"{shown} cannot be read ({_reason(error)}); choose another --out") from None
    if any(mark in names and _own_file(Path(folder) / mark) for mark in marks):
        return
    clashing = [name for name in names if name in owner_files] if owner_files else names
    if clashing:
        listed = ", ".join(clashing[:5]) + (f" and {len(clashing) - 5} more" if len(clashing) > 5 else "")
        raise ValueError(f"{shown} already exists and was not made by this runner (it holds {listed}, and "
                         f"no {marks[0]}); the runner does not write over files it did not create: choose "
                         "another --out, or move that folder away")


def _own_file(path: Path) -> bool:
    """A regular file with no other name: not a link to something elsewhere (a lock file is
    opened for writing, so a link would let the runner truncate a file it did not make)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return True  # unknown: never remove it


def _probe_write(folder: Path) -> None:
    probe = folder / f".write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"distill_lib write probe\n" * 256)  # 6 KiB: a page or two, like run.json
        os.fsync(fd)
    finally:
        os.close(fd)
        try:
            probe.unlink()
        except OSError:
            pass


def _free_bytes(folder: Path) -> int | None:
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return stats.f_bavail * stats.f_frsize if stats.f_blocks else None  # 0 blocks: /proc-like


def _remove_dirs(created: list[Path]) -> None:
    for folder in reversed(created):  # innermost first; only ones that are still empty
        try:
            folder.rmdir()
        except OSError:
            break


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


# ---------------------------------------------------------------- the Dask scheduler

def connect_cluster(address, timeout: float | None = None):
    """A ``distributed.Client`` for ``address`` (a scheduler address, a Client or a cluster
    object), connected within ``timeout`` s; ``ValueError`` naming the address otherwise.

    A plain TCP address is first checked by hand: the port must accept a connection and speak
    first with a Dask frame (a scheduler sends its handshake at once). Without that check an HTTP
    or SSH port makes ``distributed`` wait forever for a handshake, or read the first eight bytes
    of a banner as a frame length and try to allocate exabytes.
    """
    timeout = CLUSTER_CONNECT_TIMEOUT_S if timeout is None else timeout
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--cluster needs the 'distributed' package (pip install distributed)") from None
    if isinstance(address, Client):
        return address
    shown = f"--cluster {address!r}" if isinstance(address, str) else f"cluster {address!r}"
    if isinstance(address, str):
        address = _check_address(address, shown, timeout)
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except Exception as error:  # OSError, TimeoutError, MemoryError from a garbled frame, ...
        raise ValueError(f"{shown}: no Dask scheduler could be reached within {timeout:g} s "
                         f"({type(error).__name__}: {error})") from None


def _check_address(address: str, shown: str, timeout: float) -> str:
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import backends

    form = f"give the scheduler's address as tcp://HOST:PORT (the scheduler's port, {DASK_DEFAULT_PORT} by default)"
    text = address.strip()
    try:
        scheme, location = parse_address(text, strict=False)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{shown} is not an address ({error}); {form}") from None
    if scheme in ("http", "https"):
        raise ValueError(f"{shown} is a web address (the Dask dashboard?), not a scheduler's; {form}")
    if scheme not in backends:
        raise ValueError(f"{shown} has an unknown scheme {scheme!r} (known: {', '.join(sorted(backends))}); {form}")
    if scheme not in ("tcp", "tls"):
        return text
    try:
        host, port = parse_host_port(location)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{shown} is not HOST:PORT ({error}); {form}") from None
    if not host or not 0 < port < 65536:
        raise ValueError(f"{shown} is not HOST:PORT; {form}")
    if scheme == "tcp":
        _expect_dask_greeting(host, port, shown, timeout)
    return text


def _expect_dask_greeting(host: str, port: int, shown: str, timeout: float) -> None:
    try:
        connection = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        reason = _reason(error) if not isinstance(error, socket.timeout) else f"no answer within {timeout:g} s"
        raise ValueError(f"{shown}: cannot connect ({reason}); is the scheduler running there?") from None
    received, closed = b"", False
    with connection:
        try:
            connection.settimeout(timeout)
            while len(received) < 8:
                chunk = connection.recv(8 - len(received))
                if not chunk:
                    closed = True
                    break
                received += chunk
        except OSError:  # a timeout or a reset: judged by what arrived
            pass
    if len(received) < 8:
        what = "it closed the connection" if closed else f"it sent no Dask handshake within {timeout:g} s"
        raise ValueError(f"{shown} accepts connections but is not a Dask scheduler: {what}; "
                         "give the scheduler's tcp://HOST:PORT")
    (frame_bytes,) = struct.unpack("<Q", received)
    if not 0 < frame_bytes < 1 << 24:
        banner = received.decode("ascii", "replace")
        raise ValueError(f"{shown} is not a Dask scheduler: it greets with {banner!r} (an HTTP, SSH or "
                         "other server); give the scheduler's tcp://HOST:PORT")


# ---------------------------------------------------------------- directory locks

class DirectoryBusy(ValueError):
    """The directory is held by another live runner (a refusal: nothing was started)."""


def busy_error(what: str, directory, holder: dict) -> DirectoryBusy:
    """The refusal for ``directory`` (``what``: "run directory", "sweep directory") held by the
    live runner ``holder`` (its lock record)."""
    return DirectoryBusy(f"{what} {directory} is in use by {describe_holder(holder)}; "
                         "wait for it to finish, stop it, or choose another --out")


class DirectoryLock:
    """An exclusive ``flock`` on ``path`` (a file in the guarded directory), held until
    :meth:`release`; the kernel drops it when the process dies. ``what`` names the directory in
    messages ("sweep directory", "run directory")."""

    def __init__(self, path, what: str):
        self.path, self.what = Path(path), what
        self.fd: int | None = None
        self.token = uuid.uuid4().hex
        self.previous: dict = {}  # the record a holder that died without releasing left behind

    def acquire(self) -> "DirectoryLock":
        # O_NOFOLLOW, and a single name: the record below truncates the file, which must be ours.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise OSError(f"{self.path} is not a lock file of the runner's (it has other names or "
                              "is not a regular file); remove it")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_record(fd)
            os.close(fd)
            raise busy_error(self.what, self.path.parent, holder) from None
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.previous = _read_record(fd)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token,
                  "command": shlex.join(sys.argv) if sys.argv and sys.argv[0] else sys.executable,
                  "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only the description is missing
            pass
        return self

    def lost(self) -> str | None:
        """Why this lock no longer guards its directory (the lock file, and so the directory, was
        deleted or replaced while held), or None. Whatever now sits at that path is not ours."""
        try:
            here = os.stat(self.path)
        except OSError:
            here = None
        mine = os.fstat(self.fd)
        if here is not None and mine.st_nlink > 0 and (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
            return None
        return (f"the {self.what} {self.path.parent} was deleted or replaced while this runner held it "
                f"(its {self.path.name} is {'gone' if here is None else 'another file'})")

    def release(self) -> None:
        """Unlock; the record is cleared first, so the next holder knows this one ended cleanly."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder_of(path) -> dict | None:
    """The record of a live holder of the lock file ``path``, or None when it is free (or absent).
    Nothing is created."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_record(fd) or {"pid": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def describe_holder(holder: dict) -> str:
    if not holder:
        return "another process"
    where = "" if holder.get("host") in (None, socket.gethostname()) else f" on {holder['host']}"
    since = f" since {holder['started']}" if holder.get("started") else ""
    command = f" (`{holder['command']}`)" if holder.get("command") else ""
    return f"pid {holder.get('pid', '?')}{where}{command}{since}"


def _read_record(fd: int) -> dict:
    try:
        data = os.pread(fd, 65536, 0)
        record = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def kill_processes_with_token(name: str, token: str, timeout: float = 10) -> list[int]:
    """Kill every process of this host whose environment has ``name=token`` (a runner that died
    leaves its papermill child and kernel with it); returns their pids."""
    import psutil

    if not token:
        return []
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(name) == token:
                found.append(process)
        except (psutil.Error, OSError):
            continue
    for process in found:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(found, timeout=timeout)
    return [process.pid for process in found]
