"""Local mode's fork template: skill processes forked from a pre-imported runtime.

A cold first event in local mode would otherwise pay a new interpreter and the
runtime's library imports (asyncio, Starlette, uvicorn, the CloudEvents SDK:
about 120 ms) on every scale from zero. The template is one process, started
with ``rouse dev``, that imports those once and then forks a skill process per
request (gunicorn's ``--preload``, multiprocessing's forkserver and Android's
zygote do the same). A forked skill runs ``python -m rouse_runtime`` as an exec'd
one would: its own env, cwd, ``sys.path``, stdout/stderr pipes and session; it
gets SIGTERM when the template dies, and the template when local mode dies.

Why not multiprocessing's forkserver: its children re-import the parent's
``__main__`` (the ``rouse`` script, pytest, a bench) and take the parent's
``sys.path`` and cwd, the opposite of a fresh ``python -m``; and it is one per
process. This protocol is small: one request (the command, env, cwd and three
fds) gets one reply (the pid); the template reaps its children and writes each
exit code into that child's status pipe.

Fork safety: the template runs no thread and no event loop (its loop is a
blocking ``recvmsg``); it refuses to become ready, or to fork, if a thread
exists. Env read while preloading is recorded; a skill whose env differs on one
of those names (or on an interpreter setting, ``PYTHON*``) is exec'd instead.
Forks share the template's string hash seed, where exec'd processes draw one
each; nothing in the runtime depends on it differing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import io
import json
import os
import runpy
import signal
import socket
import sys
import threading
import traceback
import types
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NoReturn

# What ``python -m rouse_runtime`` imports until its first reply, but the skill's module
# (``__main__.main()``, then uvicorn's loop and lifespan, the SQLite store, the idna codec
# that resolving the host loads). Env read while importing is recorded (``preload``).
PRELOAD = (
    "rouse_runtime.config",
    "rouse_runtime.telemetry",
    "rouse_runtime.store",
    "rouse_runtime.store.sqlite",
    "rouse_runtime.logs",
    "rouse_runtime.protocol",
    "rouse_runtime.server",
    "rouse_runtime.handler",
    "uvicorn",
    "uvicorn.lifespan.on",
    "uvicorn.loops.auto",
    "uvicorn.loops.asyncio",
    "encodings.idna",
)
OPT_OUT = "ROUSE_LOCAL_FORK"  # "0": every skill process is exec'd
INTERPRETER_ENV = "PYTHON"  # settings read by the interpreter's start, which a fork skips
ADAPTED_ENV = frozenset({"PYTHONPATH", "PYTHONUNBUFFERED"})  # a fork applies these itself
PR_SET_PDEATHSIG = 1
MAX_MESSAGE = 1 << 20
READY_TIMEOUT_SECONDS = 60.0  # the runtime's own startup timeout: then skills are exec'd
FDS_PER_REQUEST = 3  # stdout, stderr, status

Log = Callable[[str], None]


def die_with_parent() -> None:
    """Linux: this process gets SIGTERM when its parent dies without stopping it (no orphans)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def forkable(command: tuple[str, ...]) -> bool:
    """This interpreter's ``-m module`` or ``-c code``: what the template can run in a fork."""
    return len(command) == 3 and command[0] == sys.executable and command[1] in ("-m", "-c")


def env_mismatch(
    env: Mapping[str, str], template_env: Mapping[str, str], read: frozenset[str]
) -> str | None:
    """The first name whose value a fork would take from the template instead of ``env``."""
    if "*" in read:
        return "the whole env (a module copied it while importing)"
    interpreter = {k for k in {*env, *template_env} if k.startswith(INTERPRETER_ENV)}
    for name in sorted((read | interpreter) - ADAPTED_ENV):
        if env.get(name) != template_env.get(name):
            return name
    return None


def child_sys_path(
    template_path: list[str],
    template_pythonpath: str,
    pythonpath: str,
    cwd: str,
    *,
    safe_path: bool = False,
) -> list[str]:
    """``sys.path`` as ``python -m`` in ``cwd`` with ``PYTHONPATH=pythonpath`` would have it.

    ``safe_path``: ``PYTHONSAFEPATH`` (the same for both, or the skill is exec'd) puts no cwd first.
    """
    first = [] if safe_path else [cwd]  # and the template's own cwd is not the child's
    own = [p for p in template_pythonpath.split(os.pathsep) if p]
    rest = [p for p in template_path[len(first) :] if p not in own]
    return [*first, *(p for p in pythonpath.split(os.pathsep) if p), *rest]


# -- the template process ------------------------------------------------------------------


class _RecordingEnviron(os._Environ):  # type: ignore[type-arg]
    """os.environ that remembers which names were read (while preloading only)."""

    read: ClassVar[set[str]] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return str(super().__getitem__(key))

    def __iter__(self) -> Any:
        self.read.add("*")  # a module copied the whole env: no fork can honour another one
        return super().__iter__()


def preload() -> frozenset[str]:
    """Import PRELOAD; the env names they read while importing."""
    os.environ.__class__ = _RecordingEnviron
    try:
        for module in PRELOAD:
            __import__(module)
    finally:
        os.environ.__class__ = os._Environ
    return frozenset(_RecordingEnviron.read)


def fork_unsafe() -> str | None:
    """Why forking now could copy a half-held lock (a thread or a running event loop)."""
    if threading.active_count() > 1:
        return f"threads running: {[t.name for t in threading.enumerate()]}"
    if "asyncio" in sys.modules and asyncio._get_running_loop() is not None:
        return "an event loop is running"
    return None


def serve(control_fd: int) -> int:
    """The template's main: preload, say ready, then fork one skill process per request."""
    base_path = list(sys.path)
    base_pythonpath = os.environ.get("PYTHONPATH", "")
    read = preload()
    control = socket.socket(fileno=control_fd)
    unsafe = fork_unsafe()
    if unsafe is not None:
        print(f"fork template: cannot fork safely: {unsafe}", file=sys.stderr)
        return 2
    statuses: dict[int, int] = {}  # child pid -> its status pipe

    def reap(*_: object) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            fd = statuses.pop(pid, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.write(fd, str(os.waitstatus_to_exitcode(status)).encode())
                os.close(fd)

    signal.signal(signal.SIGCHLD, reap)
    gc.freeze()  # the forks' collections skip the preloaded objects: their pages stay shared
    control.send(json.dumps({"ready": sorted(read)}).encode())
    while True:
        message, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, FDS_PER_REQUEST)
        if not message:
            return 0  # local mode closed the socket: its children stop with it (PDEATHSIG)
        request = json.loads(message)
        unsafe = fork_unsafe()
        if unsafe is not None or len(fds) != FDS_PER_REQUEST:
            control.send(json.dumps({"error": unsafe or "expected 3 fds"}).encode())
            for fd in fds:
                os.close(fd)
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        # SIGCHLD waits until the child's status pipe is on record (it may exit at once).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        template = os.getpid()
        pid = os.fork()
        if pid == 0:
            control.close()
            _run_child(request, fds, template, (base_path, base_pythonpath))
        statuses[pid] = fds[2]
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        os.close(fds[0])
        os.close(fds[1])
        control.send(json.dumps({"pid": pid}).encode())


def _run_child(
    request: dict[str, Any], fds: list[int], template: int, base: tuple[list[str], str]
) -> NoReturn:
    """In the fork: become the process ``python <flag> <arg>`` would be, run it, exit."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.setsid()
        die_with_parent()
        if os.getppid() != template:  # the template died before the line above took effect
            os._exit(1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        for target, fd in ((0, devnull), (1, fds[0]), (2, fds[1])):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the pipes, other children's status fds
        env: dict[str, str] = request["env"]
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(env)
        sys.path[:] = child_sys_path(
            *base, env.get("PYTHONPATH", ""), os.getcwd(), safe_path=sys.flags.safe_path
        )
        _reopen_stdio(unbuffered=bool(env.get("PYTHONUNBUFFERED")))
        code = _run_command(request["flag"], request["arg"])
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            _finish()
        os._exit(code)


def _reopen_stdio(*, unbuffered: bool) -> None:
    """stdio on the new fds, unbuffered as ``PYTHONUNBUFFERED`` makes an exec'd process's."""
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the process's stdin for its whole life
    for fd, name in ((1, "stdout"), (2, "stderr")):
        current: io.TextIOWrapper = getattr(sys, name)
        raw = io.FileIO(fd, "w", closefd=False)
        stream = io.TextIOWrapper(
            raw if unbuffered else io.BufferedWriter(raw),
            encoding=current.encoding,
            errors=current.errors,
            write_through=unbuffered,
            line_buffering=not unbuffered and name == "stderr",  # as CPython's create_stdio
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _run_command(flag: str, arg: str) -> int:
    """``python -m module`` or ``python -c code``, as the interpreter's own dispatch runs them."""
    if flag == "-m":
        sys.argv = [arg]
        runpy.run_module(arg, run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c"]
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        exec(compile(arg, "<string>", "exec"), main.__dict__)
    return 0


def _exit_code(exc: SystemExit) -> int:
    """``sys.exit(x)``: None is 0, an int is itself, anything else is printed and 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _finish() -> None:
    """What interpreter exit does that ``os._exit`` skips: atexit functions, flushed stdio."""
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()


# -- local mode's side ---------------------------------------------------------------------


class ForkedProcess:
    """A skill process the template forked: the part of asyncio's Process the supervisor uses."""

    def __init__(
        self, pid: int, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader
    ) -> None:
        self.pid = pid
        self.stdout: asyncio.StreamReader | None = stdout
        self.stderr: asyncio.StreamReader | None = stderr
        self.returncode: int | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    async def watch(self, status: asyncio.StreamReader) -> None:
        """The exit code from the template; if the template died first, the end of the process."""
        data = await status.read()
        if data:
            code = int(data)
        else:
            await _gone(self.pid)
            code = -signal.SIGTERM  # what the template's death sent it (PDEATHSIG)
        self.returncode = code
        self._exited.set_result(code)


class ForkTemplate:
    """Local mode's handle on the template process: start it, fork from it, restart it."""

    def __init__(self, env: Mapping[str, str], log: Log) -> None:
        self.env = dict(env)
        self.log = log
        self.read: frozenset[str] = frozenset()
        self._proc: asyncio.subprocess.Process | None = None
        self._control: socket.socket | None = None
        self._ready: asyncio.Future[bool] | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._told: set[str] = set()
        self._closing = False

    async def start(self) -> None:
        """Start the template; its imports run in the background (``ready`` waits for them)."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self._ready = loop.create_future()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                __name__,
                str(theirs.fileno()),
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            ours.close()
            self._give_up(f"cannot start: {exc}")
            return
        finally:
            theirs.close()
        self._control = ours
        self._track(self._watch(self._proc, ours))

    async def ready(self) -> bool:
        """Wait for the template's imports; False if it cannot fork (skills are exec'd)."""
        if self._ready is None:
            return False
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), READY_TIMEOUT_SECONDS)
        except TimeoutError:
            self._give_up(f"not ready after {READY_TIMEOUT_SECONDS:.0f}s")
            if self._proc is not None and self._proc.returncode is None:
                self._proc.kill()
            return False

    async def fork(self, command: tuple[str, ...], env: Mapping[str, str]) -> ForkedProcess | None:
        """A skill process forked from the template, or None (logged once why) to exec it."""
        if not await self.ready():
            return None
        mismatch = env_mismatch(env, self.env, self.read)
        if mismatch is not None:
            self._tell(
                f"fork template: {mismatch} differs from rouse dev's env and is read at import:"
                " skill processes with it are exec'd"
            )
            return None
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        status_r, status_w = os.pipe()
        request = {"flag": command[1], "arg": command[2], "env": dict(env), "cwd": os.getcwd()}
        try:
            async with self._lock:
                control = self._control
                assert control is not None
                socket.send_fds(control, [json.dumps(request).encode()], [out_w, err_w, status_w])
                reply = json.loads(await loop.sock_recv(control, MAX_MESSAGE) or b"{}")
        except (OSError, ValueError) as exc:
            reply = {"error": str(exc)}
        finally:
            for fd in (out_w, err_w, status_w):
                os.close(fd)
        if "pid" not in reply:
            for fd in (out_r, err_r, status_r):
                os.close(fd)
            self.log(f"fork template: no fork ({reply.get('error', 'it exited')}): exec instead")
            return None
        proc = ForkedProcess(int(reply["pid"]), await _reader(out_r), await _reader(err_r))
        self._track(proc.watch(await _reader(status_r)))
        return proc

    async def close(self) -> None:
        """Stop the template (its skill processes are stopped by their pools first)."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._control is not None:
            self._control.close()  # the template's recvmsg ends: it exits
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
            await self._proc.wait()

    async def _watch(self, proc: asyncio.subprocess.Process, control: socket.socket) -> None:
        """Wait for ready, then for the exit: a template that served is restarted."""
        assert self._ready is not None and proc.stderr is not None
        tail: deque[str] = deque(maxlen=5)
        self._track(_collect(proc.stderr, tail, self.log))
        hello = await asyncio.get_running_loop().sock_recv(control, MAX_MESSAGE)
        was_ready = bool(hello)
        if hello:
            self.read = frozenset(json.loads(hello)["ready"])
            self._ready.set_result(True)
        code = await proc.wait()
        control.close()
        if self._closing:
            return
        why = f"exited with code {code}: {' | '.join(tail) or 'no output'}"
        if was_ready:
            self.log(f"fork template {why}; restarting it")
            await self.start()
        else:
            self._give_up(why)

    def _give_up(self, why: str) -> None:
        if self._ready is not None and self._ready.done():
            return  # said already (a template killed for its timeout then exits)
        if self._ready is not None:
            self._ready.set_result(False)
        self._tell(f"fork template {why}: skill processes are exec'd")

    def _tell(self, line: str) -> None:
        if line not in self._told:
            self._told.add(line)
            self.log(line)

    def _track(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def template_for(command: tuple[str, ...], env: Mapping[str, str], log: Log) -> ForkTemplate | None:
    """The template local mode forks skills from, or None (one log line why) to exec them."""
    if env.get(OPT_OUT) == "0":
        log(f"{OPT_OUT}=0: skill processes are exec'd")
        return None
    if not forkable(command):
        log(f"custom command {' '.join(command)}: skill processes are exec'd")
        return None
    return ForkTemplate(env, log)


async def _reader(fd: int) -> asyncio.StreamReader:
    """A StreamReader on the read end of a pipe (as asyncio's subprocess gives)."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0)
    )
    return reader


async def _collect(stream: asyncio.StreamReader, tail: deque[str], log: Log) -> None:
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip()
        tail.append(text)
        log(f"fork template | {text}")


async def _gone(pid: int) -> None:
    """Wait for a process that is not our child to end (a pidfd is readable when it has)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, done.set_result, None)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
