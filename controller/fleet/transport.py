"""Transports: "start this command and give me its stdio".

The local subprocess transport and the SSH transport honour one contract, so the agent is
driven the same way on this machine and on a remote host (and both run the same tests).
"""

from __future__ import annotations

import collections
import getpass
import logging
import subprocess
import threading
from typing import Protocol

from controller.fleet.inventory import HostSpec
from controller.fleet.sshconfig import config_file_of, resolve
from controller.fleet.sshroute import Route, retrying


class Reader(Protocol):
    """What is read of a command's stdout or stderr: lines of bytes, b"" at the end."""

    def readline(self) -> bytes: ...


class Writer(Protocol):
    """What is written to a command's stdin."""

    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class Process(Protocol):
    """A started command: write its stdin, read its stdout lines, collect its stderr."""

    @property
    def stdin(self) -> Writer: ...
    @property
    def stdout(self) -> Reader: ...

    def stderr_tail(self) -> str: ...
    def close_stdin(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int | None: ...
    def kill(self) -> None: ...


class Transport(Protocol):
    name: str
    user: str

    def start(self, command: str) -> Process: ...
    def run(self, command: str, stdin: bytes = b"", timeout: float = 30.0) -> tuple[int, str, str]: ...
    def close(self) -> None: ...


class _StderrTail:
    """Drains a stderr stream in the background, keeping its last lines for error messages."""

    def __init__(self, stream: Reader, lines: int = 50):
        self._lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: Reader) -> None:
        try:
            for raw in iter(stream.readline, b""):
                self._lines.append(raw.decode("utf-8", "replace").rstrip())
        except (OSError, ValueError, EOFError):
            pass

    def text(self, wait: float = 0.0) -> str:
        if wait:
            self._thread.join(wait)
        return "\n".join(self._lines)


# --------------------------------------------------------------------------- local


class LocalProcess:
    def __init__(self, popen: subprocess.Popen):
        assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None  # all piped
        self._p = popen
        self.stdin = popen.stdin
        self.stdout = popen.stdout
        self._err = _StderrTail(popen.stderr)

    def stderr_tail(self) -> str:
        return self._err.text(wait=0.5 if self._p.poll() is not None else 0.0)

    def close_stdin(self) -> None:
        try:
            self.stdin.close()
        except OSError:
            pass

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self._p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self._p.poll() is None:
            self._p.kill()


class LocalTransport:
    """Runs commands on this machine through /bin/sh, as the SSH transport does on a host."""

    def __init__(self, name: str = "local", env: dict | None = None, wrap: list[str] | None = None):
        """`wrap` prefixes every command (e.g. ["unshare", "--net"] for a private network namespace)."""
        self.name = name
        self.user = getpass.getuser()
        self._env = env
        self._wrap = list(wrap or [])

    def start(self, command: str) -> LocalProcess:
        popen = subprocess.Popen(
            [*self._wrap, "/bin/sh", "-c", command],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self._env, start_new_session=True,
        )
        return LocalProcess(popen)

    def run(self, command: str, stdin: bytes = b"", timeout: float = 30.0) -> tuple[int, str, str]:
        p = subprocess.run([*self._wrap, "/bin/sh", "-c", command], input=stdin, capture_output=True, timeout=timeout,
                           env=self._env)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- SSH


class _ChannelStream:
    """Minimal file-like ends of an SSH channel (paramiko's own file wrappers misbehave when
    garbage-collected after the channel closed)."""

    def __init__(self, channel, stderr: bool = False):
        self._ch = channel
        self._recv = channel.recv_stderr if stderr else channel.recv
        self._buf = b""

    # reading (stdout / stderr)
    def readline(self) -> bytes:
        while b"\n" not in self._buf:
            chunk = self._recv(65536)
            if not chunk:
                line, self._buf = self._buf, b""
                return line
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line + b"\n"

    def read(self) -> bytes:
        chunks = [self._buf]
        self._buf = b""
        while chunk := self._recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)

    # writing (stdin)
    def write(self, data: bytes) -> int:
        self._ch.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._ch.shutdown_write()


class SSHProcess:
    def __init__(self, channel):
        self._ch = channel
        self.stdin = _ChannelStream(channel)
        self.stdout = _ChannelStream(channel)
        self._err = _StderrTail(_ChannelStream(channel, stderr=True))

    def stderr_tail(self) -> str:
        return self._err.text(wait=0.5 if self._ch.exit_status_ready() else 0.0)

    def close_stdin(self) -> None:
        try:
            self._ch.shutdown_write()  # EOF for the command
        except (OSError, EOFError):
            pass

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._ch.status_event.wait(timeout):
            return None
        return self._ch.recv_exit_status()

    def kill(self) -> None:
        self._ch.close()


class SSHTransport:
    """An SSH connection to one host (paramiko), reached as OpenSSH would reach it.

    Options come from sshconfig.resolve (ssh -G where installed). ProxyJump hops are carried as
    direct-tcpip channels of the previous hop's connection, each hop with its own user, keys and
    known_hosts; ProxyCommand runs as paramiko's ProxyCommand. Direct sockets get TCP_NODELAY.
    Transient failures to connect are retried with a short backoff; refused authentication and
    host-key problems never are.
    """

    def __init__(self, spec: HostSpec, *, connect_timeout: float = 5.0, accept_new_host_keys: bool = False,
                 ssh_config: str | None = None):
        """`ssh_config` is a file to use instead of ~/.ssh/config and /etc/ssh/ssh_config (ssh -F)."""
        # paramiko logs failed handshakes as tracebacks; the errors below say it in one line.
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
        logging.getLogger("paramiko").propagate = False

        self.name = spec.name
        options = resolve(spec, ssh_config)
        self.hostname, self.port, self.user = options.hostname, options.port, options.user
        self.known_hosts = options.user_known_hosts[0] if options.user_known_hosts else None
        route = Route(spec.name, config_file_of(spec.ssh_args, ssh_config), connect_timeout, accept_new_host_keys)
        self._chain = retrying(lambda: route.connect(options))
        self._transport = self._chain[-1].get_transport()

    def start(self, command: str) -> SSHProcess:
        channel = self._transport.open_session()
        channel.exec_command(command)
        return SSHProcess(channel)

    def run(self, command: str, stdin: bytes = b"", timeout: float = 30.0) -> tuple[int, str, str]:
        channel = self._transport.open_session()
        channel.settimeout(timeout)
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        out = _ChannelStream(channel).read()
        err = _ChannelStream(channel, stderr=True).read()
        return channel.recv_exit_status(), out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def close(self) -> None:
        for client in reversed(self._chain):
            client.close()
