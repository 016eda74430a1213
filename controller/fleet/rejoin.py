"""Hosts whose agent was lost mid-run: reconnected in the background, then let back in or left out.

An agent is lost when its channel closes or goes silent: the network broke, sshd or the agent was
killed, or the host rebooted. Each of those leaves the host on values of its own choosing, and the
run may only continue on it when they are the ones its baseline was measured on. So, without
holding up the other hosts, the host is reconnected (a fresh SSH session and agent, retried every
RETRY_EVERY seconds for REJOIN_WITHIN seconds: long enough for a partitioned agent to restore
and release its state folder, or for a VM to boot) and judged:

    same boot_id       the old agent restored the originals when its channel closed (or the new
                       one restored its stale journal at start: hello's ``recovered``)
    another boot_id    the host rebooted: its knobs are at their boot values (the kernel's default
                       or a sysctl.d drop-in), and the agent discarded the earlier boot's journal
                       without writing it back (hello's ``discarded``)

Either way the knobs are read: on the run's originals, the host rejoins and the run goes on with
it (its next apply journals the originals again); anywhere else, its baseline no longer holds and
it is left out of the rest of the run, untouched. Both are said per host in the result. A host is
reconnected once per run (a second loss drops it), and a reconnection still under way when the
run ends is cancelled.

The host is reconnected the way the run connected it (`--workers`): in this process, or in a new
Ray actor of its own, placed by its inventory's resource like the first; an actor whose process
died comes back that way, a host whose Ray node is gone stays out until a node offering its
resource can take it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from controller.errors import TunefleetError
from controller.fleet.executor import workers_for
from controller.fleet.session import Host

REJOIN_WITHIN = 180.0
RETRY_EVERY = 3.0
CLOSE_WAIT = 10.0


@dataclass
class Rejoin:
    host: Host | None  # the new session when the host rejoins; None: it stays out
    note: str          # what was found, for the result


class Rejoiner:
    """Reconnects lost hosts of a fleet, one background thread each; `poll` hands back the verdicts."""

    def __init__(self, fleet, originals: dict[str, dict[str, str]], within: float = REJOIN_WITHIN,
                 every: float = RETRY_EVERY):
        self.fleet = fleet
        self.originals = originals
        self.boot_ids = {n: h.facts.get("boot_id") for n, h in fleet.hosts.items()}
        self.within, self.every = within, every
        self._cancel = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._why: dict[str, str] = {}
        self._done: dict[str, Rejoin] = {}
        self._lock = threading.Lock()

    def start(self, name: str, why: str) -> bool:
        """Begin reconnecting `name`, lost for `why`; False when it was reconnected once already."""
        if name in self._threads:
            return False
        self._why[name] = why
        thread = threading.Thread(target=self._run, args=(name, self.fleet.hosts[name], why),
                                  name=f"rejoin-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()
        return True

    def poll(self, wait: bool = False, within: float | None = None) -> dict[str, Rejoin]:
        """The verdicts reached since the last poll (with `wait`, once every reconnection under
        way has one, or `within` seconds have passed); a host that rejoins is the fleet's again."""
        if wait:
            deadline = None if within is None else time.monotonic() + within
            for thread in list(self._threads.values()):
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._lock:
            done, self._done = self._done, {}
        for name, verdict in done.items():
            if verdict.host is not None:
                self.fleet.hosts[name] = verdict.host
        return done

    def wait_for(self, name: str) -> Rejoin | None:
        """The verdict on one host, waiting for its reconnection (bounded by the rejoin window);
        None when another caller took it already (the evaluator then says what happened)."""
        thread = self._threads.get(name)
        if thread is not None:
            thread.join(self.within + CLOSE_WAIT + 60.0)
        with self._lock:
            verdict = self._done.pop(name, None)
        if verdict is not None and verdict.host is not None:
            self.fleet.hosts[name] = verdict.host
        return verdict

    def close(self) -> dict[str, Rejoin]:
        """The run is over: stop trying, wait a little for the threads, and return the verdicts not
        polled (a host that came back since the last poll took no part in what followed: said so).
        A reconnection that does not stop within CLOSE_WAIT (a Ray actor still waiting for a node)
        is left to end on its own: it closes what it opens once it sees the run is over."""
        self._cancel.set()
        done = {n: replace(v, note=f"{v.note} after the run's last evaluation") if v.host else v
                for n, v in self.poll(wait=True, within=CLOSE_WAIT).items()}
        for name, thread in self._threads.items():
            if thread.is_alive() and name not in done:
                done[name] = Rejoin(None, f"{self._why[name]}; not back before the run ended")
        return done

    def _run(self, name: str, old: Host, why: str) -> None:
        try:
            verdict = self._reconnect(name, old, why)
        except Exception as e:  # noqa: BLE001 - a verdict is owed whatever happens in this thread
            verdict = Rejoin(None, f"{why}; reconnecting failed ({type(e).__name__}: {e})")
        with self._lock:
            self._done[name] = verdict

    def _reconnect(self, name: str, old: Host, why: str) -> Rejoin:
        try:
            old.close()  # its agent is gone (or restores when this channel closes)
        except Exception:  # noqa: BLE001 - a dead session may fail to close in any way
            pass
        started, last = time.monotonic(), None
        while not self._cancel.is_set() and time.monotonic() - started < self.within:
            got = workers_for(self.fleet.options.workers).connect([old.spec], self.fleet.options)[name]
            if isinstance(got, TunefleetError):
                last = got.message
                self._cancel.wait(self.every)
                continue
            host = got
            if self._cancel.is_set():
                host.close()
                break
            return self._judge(name, host, why)
        when = "before the run ended" if self._cancel.is_set() else f"within {self.within:g} s"
        return Rejoin(None, f"{why}; not back {when}" + (f" (last try: {last})" if last else ""))

    def _judge(self, name: str, host: Host, why: str) -> Rejoin:
        before, now = self.boot_ids.get(name) or "", host.facts.get("boot_id") or ""
        rebooted = before != now
        if rebooted:
            what = f"rebooted (boot_id {before[:8]}… → {now[:8]}…)"
            stale = sum(len(d.get("originals") or {}) for d in (host.facts.get("discarded") or {}).values())
            if stale:
                what += f", its journal of the earlier boot discarded unreplayed ({stale} knob(s))"
        else:
            what = f"agent lost ({why}), same boot"
            if host.facts.get("recovered"):
                what += f", {len(host.facts['recovered'])} knob(s) restored from its journal"
        originals = self.originals[name]
        try:
            values = host.request("read", {"names": list(originals)})["values"]
        except TunefleetError as e:
            host.close()
            return Rejoin(None, f"{what}; its knobs cannot be read ({e.message}); left out of the rest of the run")
        changed = {k: values.get(k) for k, v in originals.items() if values.get(k) != v}
        if changed:
            host.close()  # this agent changed nothing: the host stays as its boot left it
            where = "at boot defaults or a persisted drop-in" if rebooted else "not on the run's originals"
            k = next(iter(changed))
            return Rejoin(None, f"{what}, values {where} ({k} = {changed[k]}, {originals[k]} at the run's start): "
                                "its baseline no longer holds; left out of the rest of the run")
        try:  # from here on a change by someone else is drift again, as on the first session
            host.request("watch", {"values": originals})
        except TunefleetError as e:
            host.close()
            return Rejoin(None, f"{what}, values back on the run's originals, but {e.message}; left out of the rest "
                                "of the run")
        return Rejoin(host, f"{what}, values back on the run's originals; rejoined")
