"""Transports: "start this command and give me its stdio".

The local subprocess transport and the SSH transport honour one contract, so the agent is
driven the same way on this machine and on a remote host (and both run the same tests).
"""

from __future__ import annotations

import collections
import errno
import getpass
import logging
import os
import socket
import subprocess
import threading
import time
from typing import IO, Protocol

from controller.errors import AuthFailed, HostError, Unreachable, UnknownHostKey, UserError
from controller.fleet.inventory import HostSpec
from controller.fleet.sshconfig import SSHOptions, config_file_of, resolve, resolve_hop


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
        import paramiko  # paramiko costs ~0.1 s to import: only when a host is really contacted

        # paramiko logs failed handshakes as tracebacks; the errors below say it in one line.
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
        logging.getLogger("paramiko").propagate = False

        self.name = spec.name
        options = resolve(spec, ssh_config)
        self.hostname, self.port, self.user = options.hostname, options.port, options.user
        self.known_hosts = options.user_known_hosts[0] if options.user_known_hosts else None
        route = _Route(spec.name, config_file_of(spec.ssh_args, ssh_config), connect_timeout, accept_new_host_keys)
        self._chain = _retrying(lambda: route.connect(options))
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


RETRY_DELAYS = (0.5, 1.0)  # seconds before the 2nd and 3rd attempt


def _retrying(connect):
    """Retry what a moment may cure (refused, timed out, unreachable), nothing else."""
    for delay in (*RETRY_DELAYS, None):
        try:
            return connect()
        except Unreachable as e:
            if delay is None or not getattr(e, "transient", False):
                raise
        time.sleep(delay)


def _transient(error: Unreachable) -> Unreachable:
    error.transient = True
    return error


class _Route:
    """Builds the chain of SSH connections to a host: its jump hops first, the host last."""

    MAX_DEPTH = 8

    def __init__(self, host: str, config_file: str | None, timeout: float, accept_new: bool):
        self.host, self.config_file, self.timeout, self.accept_new = host, config_file, timeout, accept_new

    def connect(self, target: SSHOptions, depth: int = 0, hop: bool = False) -> list:
        """Connected clients, first hop first; everything opened is closed again on failure."""
        import paramiko

        if depth > self.MAX_DEPTH:
            raise UserError(f"ProxyJump chain to {self.host} is more than {self.MAX_DEPTH} hops deep (a loop?)")
        chain: list = []
        try:
            if target.proxy_jump:
                hops = [resolve_hop(h, self.config_file) for h in target.proxy_jump]
                # The first hop is reached by its own options (it may have a ProxyJump of its own);
                # each later hop through the one before it, as `ssh -J a,b` does.
                chain = self.connect(hops[0], depth + 1, hop=True)
                for h in hops[1:]:
                    chain.append(self._login(h, self._channel(chain[-1], h), hop=True))
                sock = self._channel(chain[-1], target)
            elif target.proxy_command:
                sock = paramiko.ProxyCommand(target.proxy_command)
            else:
                sock = self._tcp(target, hop)
            chain.append(self._login(target, sock, hop))
            return chain
        except BaseException:
            for client in reversed(chain):
                client.close()
            raise

    def _where(self, o: SSHOptions, hop: bool) -> str:
        return f"jump host {o.alias} ({o.hostname}:{o.port})" if hop else f"{o.hostname}:{o.port}"

    def _tcp(self, o: SSHOptions, hop: bool) -> socket.socket:
        timeout = o.connect_timeout or self.timeout
        where = self._where(o, hop)
        try:
            sock = socket.create_connection((o.hostname, o.port), timeout=timeout)
        except socket.timeout:
            raise _transient(Unreachable(f"cannot reach {where}: no answer within {timeout:g} s", self.host))
        except OSError as e:
            err = Unreachable(f"cannot reach {where}: {e.strerror or e}", self.host)
            if e.errno in (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ETIMEDOUT):
                _transient(err)
            raise err
        # paramiko leaves Nagle on: every small request would wait ~40 ms for a delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _channel(self, via, o: SSHOptions):
        """A direct-tcpip channel from the jump host `via` to o's address."""
        import paramiko

        jump = via.get_transport()
        try:
            return jump.open_channel("direct-tcpip", (o.hostname, o.port), ("127.0.0.1", 0),
                                     timeout=o.connect_timeout or self.timeout)
        except paramiko.ChannelException as e:
            raise _transient(Unreachable(
                f"jump host {via.tunefleet_alias} cannot reach {o.hostname}:{o.port}: {e.text}", self.host))
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise Unreachable(f"jump host {via.tunefleet_alias} gave no channel to {o.hostname}:{o.port}: {e}",
                              self.host)

    def _login(self, o: SSHOptions, sock, hop: bool):
        """SSH handshake, host-key check and authentication over `sock`."""
        import paramiko

        where, timeout = self._where(o, hop), o.connect_timeout or self.timeout
        client = paramiko.SSHClient()
        client.tunefleet_alias = o.alias
        user_files = [f for f in o.user_known_hosts if os.path.exists(f)]
        try:
            for f in user_files[1:] + [f for f in o.global_known_hosts if os.path.exists(f)]:
                client.load_system_host_keys(f)
            if user_files:
                client.load_host_keys(user_files[0])
        except (OSError, paramiko.SSHException) as e:
            sock.close()
            raise HostError(f"{where}: cannot read a known_hosts file: {e}", self.host)
        accept = self.accept_new or o.strict_host_key_checking in ("accept-new", "no")
        record_in = o.user_known_hosts[0] if o.user_known_hosts else os.path.expanduser("~/.ssh/known_hosts")
        client.set_missing_host_key_policy(_HostKeyPolicy(accept, record_in, self.host, where))
        keys = [k for k in o.identity_files if os.path.exists(k)]
        try:
            client.connect(
                o.hostname, o.port, username=o.user, sock=sock, key_filename=keys or None,
                timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                allow_agent=not o.identities_only, look_for_keys=False,
            )
        except HostError:
            sock.close()
            raise
        except paramiko.BadHostKeyException as e:
            sock.close()
            raise UnknownHostKey(
                f"host key for {where} does NOT match known_hosts ({', '.join(user_files)}): "
                f"got {_fingerprint(e.key)}; if the host was reinstalled, remove the old line "
                f"(ssh-keygen -R {o.hostname}), otherwise do not connect", self.host)
        except paramiko.AuthenticationException as e:
            sock.close()
            raise AuthFailed(f"authentication refused for {o.user}@{where}: {e}", self.host)
        except (paramiko.SSHException, OSError, EOFError) as e:
            sock.close()
            if "No authentication methods available" in str(e):
                raise AuthFailed(f"no key for {o.user}@{where} (IdentityFile: none of "
                                 f"{', '.join(o.identity_files) or '-'} exists; no agent)", self.host)
            raise Unreachable(f"SSH handshake with {where} failed: {e}", self.host)
        client.get_transport().set_keepalive(15)
        return client


def _fingerprint(key) -> str:
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class _HostKeyPolicy:
    """Refuse unknown host keys (ssh's StrictHostKeyChecking=yes), or record them (accept-new)."""

    def __init__(self, accept_new: bool, known_hosts: str, host: str, where: str):
        self.accept_new, self.known_hosts, self.host, self.where = accept_new, known_hosts, host, where

    def missing_host_key(self, client, hostname, key):
        if not self.accept_new:
            port_hint = ""
            if hostname.startswith("["):
                h, _, port = hostname[1:].partition("]:")
                port_hint, hostname = f"-p {port} ", h
            raise UnknownHostKey(
                f"{self.where}: unknown host key {_fingerprint(key)} for {hostname} (not in {self.known_hosts}); "
                f"check it, then accept it with --accept-new-host-keys or "
                f"`ssh-keyscan {port_hint}{hostname} >> {self.known_hosts}`", self.host)
        client.get_host_keys().add(hostname, key.get_name(), key)
        os.makedirs(os.path.dirname(self.known_hosts) or ".", mode=0o700, exist_ok=True)
        with open(self.known_hosts, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
