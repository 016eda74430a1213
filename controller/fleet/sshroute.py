"""The way to one SSH host: its jump hops, then the host, each logged in with its own options.

paramiko does the SSH; this module decides how each connection's socket is made (a TCP socket
with TCP_NODELAY, a direct-tcpip channel of the previous hop, or a ProxyCommand), checks every
hop's host key against its known_hosts files, and says which hop failed.
"""

from __future__ import annotations

import errno
import hmac
import os
import socket
import time

from controller.errors import AuthFailed, HostError, UnknownHostKey, Unreachable, UserError
from controller.fleet.sshconfig import SSHOptions, resolve_hop

RETRY_DELAYS = (0.5, 1.0)  # seconds before the 2nd and 3rd attempt


def retrying(connect):
    """Retry what a moment may cure (refused, timed out, unreachable), nothing else."""
    for delay in (*RETRY_DELAYS, None):
        try:
            return connect()
        except Unreachable as e:
            if delay is None or not getattr(e, "transient", False):
                raise
        time.sleep(delay)


def _fast_mac_check(paramiko) -> None:
    """paramiko checks each received packet's MAC with a constant-time compare written in Python,
    a loop over the bytes: ~0.1 ms of CPU per packet, a fifth of what an evaluation costs the
    controller. hmac.compare_digest is the same check (constant time, False on unequal lengths), in C."""
    paramiko.util.constant_time_bytes_eq = hmac.compare_digest


def _transient(error: Unreachable) -> Unreachable:
    error.transient = True
    return error


class Route:
    """Builds the chain of SSH connections to a host: its jump hops first, the host last."""

    MAX_DEPTH = 8

    def __init__(self, host: str, config_file: str | None, timeout: float, accept_new: bool):
        self.host, self.config_file, self.timeout, self.accept_new = host, config_file, timeout, accept_new

    def connect(self, target: SSHOptions, depth: int = 0, hop: bool = False) -> list:
        """Connected clients, first hop first; everything opened is closed again on failure."""
        import paramiko

        _fast_mac_check(paramiko)
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
        except TimeoutError:
            raise _transient(Unreachable(f"cannot reach {where}: no answer within {timeout:g} s", self.host)) from None
        except OSError as e:
            err = Unreachable(f"cannot reach {where}: {e.strerror or e}", self.host)
            if e.errno in (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ETIMEDOUT):
                _transient(err)
            raise err from e
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
                f"jump host {via.tunefleet_alias} cannot reach {o.hostname}:{o.port}: {e.text}", self.host)) from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise Unreachable(f"jump host {via.tunefleet_alias} gave no channel to {o.hostname}:{o.port}: {e}",
                              self.host) from None

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
            raise HostError(f"{where}: cannot read a known_hosts file: {e}", self.host) from None
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
                f"(ssh-keygen -R {o.hostname}), otherwise do not connect", self.host) from None
        except paramiko.AuthenticationException as e:
            sock.close()
            raise AuthFailed(f"authentication refused for {o.user}@{where}: {e}", self.host) from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            sock.close()
            if "No authentication methods available" in str(e):
                raise AuthFailed(f"no key for {o.user}@{where} (IdentityFile: none of "
                                 f"{', '.join(o.identity_files) or '-'} exists; no agent)", self.host) from e
            raise Unreachable(f"SSH handshake with {where} failed: {e}", self.host) from None
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
