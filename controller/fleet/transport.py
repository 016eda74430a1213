"""Transports: "start this command and give me its stdio".

The local subprocess transport and the SSH transport honour one contract, so the agent is
driven the same way on this machine and on a remote host (and both run the same tests).
"""

from __future__ import annotations

import collections
import getpass
import logging
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import IO, Protocol

from controller.errors import AuthFailed, HostError, Unreachable, UnknownHostKey
from controller.fleet.inventory import HostSpec


class Process(Protocol):
    """A started command: write its stdin, read its stdout lines, collect its stderr."""

    stdin: IO[bytes]
    stdout: IO[bytes]

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

    def __init__(self, stream: IO[bytes], lines: int = 50):
        self._lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
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
        p = subprocess.run([*self._wrap, "/bin/sh", "-c", command], input=stdin, capture_output=True, timeout=timeout, env=self._env)
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
    """An SSH connection to one host (paramiko), with TCP_NODELAY and strict host-key checking."""

    def __init__(self, spec: HostSpec, *, connect_timeout: float = 5.0, accept_new_host_keys: bool = False,
                 ssh_config: str | None = "~/.ssh/config"):
        import paramiko  # paramiko costs ~0.1 s to import: only when a host is really contacted

        # paramiko logs failed handshakes as tracebacks; the errors below say it in one line.
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
        logging.getLogger("paramiko").propagate = False

        self.name = spec.name
        cfg = _ssh_config(ssh_config, spec.host)
        self.hostname = cfg.get("hostname", spec.host)
        self.port = int(spec.port or cfg.get("port", 22))
        self.user = spec.user or cfg.get("user") or getpass.getuser()
        keys = [spec.key] if spec.key else [os.path.expanduser(k) for k in cfg.get("identityfile", [])]
        known = spec.known_hosts or _first(cfg.get("userknownhostsfile")) or "~/.ssh/known_hosts"
        self.known_hosts = os.path.expanduser(known)
        label = f"{self.hostname}:{self.port}"

        try:
            sock = socket.create_connection((self.hostname, self.port), timeout=connect_timeout)
        except socket.timeout:
            raise Unreachable(f"cannot reach {label}: no answer within {connect_timeout:g} s", spec.name)
        except OSError as e:
            raise Unreachable(f"cannot reach {label}: {e.strerror or e}", spec.name)
        # paramiko leaves Nagle on: every small request would wait ~40 ms for a delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        self._client = client = paramiko.SSHClient()
        if os.path.exists(self.known_hosts):
            try:
                client.load_host_keys(self.known_hosts)
            except (OSError, paramiko.SSHException) as e:
                sock.close()
                raise HostError(f"cannot read known_hosts file {self.known_hosts}: {e}", spec.name)
        client.set_missing_host_key_policy(_HostKeyPolicy(accept_new_host_keys, self.known_hosts, spec.name))
        try:
            client.connect(
                self.hostname, self.port, username=self.user, sock=sock,
                key_filename=[k for k in keys if k] or None,
                timeout=connect_timeout, banner_timeout=connect_timeout, auth_timeout=connect_timeout,
                allow_agent=True, look_for_keys=not keys,
            )
        except HostError:
            sock.close()
            raise
        except paramiko.BadHostKeyException as e:
            sock.close()
            raise UnknownHostKey(
                f"host key for {label} does NOT match known_hosts ({self.known_hosts}): "
                f"got {_fingerprint(e.key)}; if the host was reinstalled, remove the old line "
                f"(ssh-keygen -R {self.hostname}), otherwise do not connect", spec.name)
        except paramiko.AuthenticationException as e:
            sock.close()
            raise AuthFailed(f"authentication refused for {self.user}@{label}: {e}", spec.name)
        except (paramiko.SSHException, OSError, EOFError) as e:
            sock.close()
            raise Unreachable(f"SSH handshake with {label} failed: {e}", spec.name)
        self._transport = client.get_transport()
        self._transport.set_keepalive(15)

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
        self._client.close()


def _ssh_config(path: str | None, host: str) -> dict:
    if not path:
        return {}
    p = Path(path).expanduser()
    if not p.is_file():
        return {}
    import paramiko

    return paramiko.SSHConfig.from_path(str(p)).lookup(host)


def _first(v):
    if isinstance(v, list):
        return v[0] if v else None
    return v.split()[0] if isinstance(v, str) and v.split() else None


def _fingerprint(key) -> str:
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class _HostKeyPolicy:
    """Refuse unknown host keys (ssh's StrictHostKeyChecking=yes), or record them (accept-new)."""

    def __init__(self, accept_new: bool, known_hosts: str, host: str):
        self.accept_new, self.known_hosts, self.host = accept_new, known_hosts, host

    def missing_host_key(self, client, hostname, key):
        if not self.accept_new:
            port_hint = ""
            if hostname.startswith("["):
                h, _, port = hostname[1:].partition("]:")
                port_hint, hostname = f"-p {port} ", h
            raise UnknownHostKey(
                f"unknown host key {_fingerprint(key)} for {hostname} (not in {self.known_hosts}); "
                f"check it, then accept it with --accept-new-host-keys or "
                f"`ssh-keyscan {port_hint}{hostname} >> {self.known_hosts}`", self.host)
        client.get_host_keys().add(hostname, key.get_name(), key)
        os.makedirs(os.path.dirname(self.known_hosts) or ".", mode=0o700, exist_ok=True)
        with open(self.known_hosts, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
