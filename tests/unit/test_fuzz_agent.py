"""Fuzzing the agent's request handling against the real agent process.

Hypothesis generates batches of request lines -- malformed JSON, wrong types, unknown ops, ids
out of order, and apply/read/describe/restore requests naming paths that are not plain sysctls
(``../``, absolute paths, ``/proc/sys/../``, NUL bytes, spaces, denied knobs) -- and pipes them
into one long-lived agent in a throwaway network namespace. Oracles:

- every non-blank line gets exactly one reply, in order, with the request's id (or null);
- no reply is an ``InternalError`` (an exception the agent did not expect) and the agent never
  exits before its stdin closes;
- after each batch the namespace's sysctls are exactly what the replies explain: a knob differs
  from its original only if an ``apply`` reply listed it as applied (with that read-back value)
  and no later ``restore`` put it back; every applied name was in the request, a plain per-
  namespace knob off the deny-list, within the bounds sent;
- when stdin closes the agent exits 0 and every sysctl is back at its original.

The ops that run programs or write files (run, persist, unpersist) and bye are not generated.
"""

import json
import os
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node_agent import protocol
from tests.unit.test_agent_process import PYTHON, Agent, Netns, payload, state  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

KNOBS = ("net.core.somaxconn", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_rmem", "net.ipv4.ip_local_port_range",
         "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_syn_retries", "net.ipv4.tcp_tw_reuse",
         "net.ipv4.tcp_congestion_control")
DENIED = ("kernel.core_pattern", "kernel.kptr_restrict", "kernel.randomize_va_space")
OPS = ("hello", "ping", "describe", "read", "apply", "restore", "sample")
BATCHES, PER_BATCH = 300, 50  # about 11,500 non-blank request lines over two agents

SNAPSHOT = r"""
import json, os, sys
for _ in sys.stdin:
  out = {}
  for folder, _, files in os.walk("/proc/sys/net"):
    for f in files:
        p = os.path.join(folder, f)
        try:
            with open(p, "rb") as h:
                out[p[10:].replace("/", ".")] = " ".join(h.read(1 << 16).decode("utf-8", "replace").split())
        except OSError:
            pass
  for name in %r:
    with open("/proc/sys/" + name.replace(".", "/")) as h:
        out[name] = " ".join(h.read().split())
  print(json.dumps(out), flush=True)
""" % (DENIED,)


def mangled(name):
    """Ways to name a knob that are not a plain sysctl name."""
    path = name.replace(".", "/")
    return st.sampled_from([
        "/proc/sys/" + path, "../" + path, "../../etc/passwd", "/proc/sys/../../etc/shadow", path,
        name + "\x00", name + "\x00.x", name.replace(".", " ", 1), name + " ", " " + name, name + "\n",
        name + "/../../../etc/passwd", name.replace("net", "net.."), name + ".", "." + name, name.upper(),
        name + ";reboot", "$(reboot)." + name, name.replace("o", "\u043e"), "net.core." + "a" * 300, "",
    ])


names = st.one_of(st.sampled_from(KNOBS), st.sampled_from(KNOBS).flatmap(mangled),
                  st.sampled_from(DENIED), st.text(max_size=40))
scalars = st.one_of(st.integers(-2 ** 70, 2 ** 70), st.integers(0, 70000), st.floats(allow_nan=True),
                    st.text(max_size=30), st.booleans(), st.none(),
                    st.sampled_from(["cubic", "reno", "bbr", "4096 87380 6291456", "20000 30000", "-1", "1\x00"]))
values = st.one_of(scalars, st.lists(st.one_of(st.integers(0, 1 << 24), scalars), max_size=4),
                   st.dictionaries(st.text(max_size=5), scalars, max_size=2))
bounds = st.dictionaries(st.sampled_from(["min", "max", "choices", "x"]),
                         st.one_of(st.integers(-10, 70000), st.lists(st.integers(0, 1 << 20), max_size=3),
                                   st.lists(st.text(max_size=6), max_size=3), st.text(max_size=5), st.none()),
                         max_size=3)
json_any = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=5), inner, max_size=3), max_leaves=8)


@st.composite
def apply_args(draw, current):
    chosen = draw(st.lists(names, min_size=0, max_size=4, unique=True))
    vals = {}
    for name in chosen:  # a denied knob is only ever offered its current value: harmless even if written
        vals[name] = current[name] if name in DENIED else draw(values)
    args = {"values": vals}
    if draw(st.booleans()):
        args["bounds"] = {n: draw(bounds) for n in draw(st.lists(st.sampled_from(chosen or ["x"]), max_size=3))}
    return draw(st.one_of(st.just(args), st.just({"values": draw(json_any)}), json_any))


@st.composite
def plausible_apply(draw):
    """Well-formed applies of real knobs with integer bounds: where a missing check would show."""
    chosen = draw(st.lists(st.sampled_from(("net.core.somaxconn", "net.ipv4.tcp_fin_timeout",
                                            "net.ipv4.tcp_keepalive_time")), min_size=1, max_size=3, unique=True))
    vals = {n: draw(st.integers(1, 5000)) for n in chosen}
    return {"values": vals, "bounds": {n: {"min": draw(st.integers(1, 2500)), "max": draw(st.integers(2500, 5000))}
                                       for n in chosen if draw(st.booleans())}}


@st.composite
def requests(draw, current):
    """One request line (bytes, no newline)."""
    kind = draw(st.integers(0, 9))
    if kind in (8, 9):
        request = {"id": draw(st.integers(0, 1 << 40)), "op": "apply", "args": draw(plausible_apply())}
        return json.dumps(request).encode()
    if kind == 0:  # raw bytes
        line = draw(st.binary(max_size=200)).replace(b"\n", b"")
        return line
    if kind == 1:  # JSON that is not a request object
        return json.dumps(draw(json_any)).encode()
    rid = draw(st.one_of(st.integers(-2 ** 63, 2 ** 63), st.integers(0, 50), st.none(), st.text(max_size=4),
                         st.booleans(), st.floats(allow_nan=False)))
    op = draw(st.one_of(st.sampled_from(OPS), st.text(max_size=10), st.integers(), st.none()))
    if op == "apply" or kind in (2, 3, 4):
        op, args = "apply", draw(apply_args(current))
    elif op in ("read", "describe", "restore"):
        args = draw(st.one_of(st.fixed_dictionaries({"names": st.lists(names, max_size=4)}), json_any))
    else:
        args = draw(json_any)
    message = {"id": rid, "op": op, "args": args}
    for key in draw(st.lists(st.sampled_from(["id", "op", "args"]), max_size=1)):
        del message[key]
    return json.dumps(message, allow_nan=True).encode()


def expected_id(line):
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(message, dict) and isinstance(message.get("id"), int) and not isinstance(message["id"], bool):
        return message["id"]
    return None


class Fuzzer:
    """One agent, the knobs' originals, and what the replies say the knobs are now."""

    def __init__(self, netns, state, payload):
        self.netns = netns
        self.agent = Agent(netns, state, payload)
        self.reader = subprocess.Popen(netns.wrap([PYTHON, "-I", "-c", SNAPSHOT]), stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE)  # reads the namespace's sysctls on request
        self.original = self.snapshot()
        volatile = self.snapshot()
        self.ignored = {n for n in self.original if volatile.get(n) != self.original[n]}
        self.expected = dict(self.original)
        self.sent = 0
        self.internal_errors = []

    def snapshot(self):
        self.reader.stdin.write(b"\n")
        self.reader.stdin.flush()
        return json.loads(self.reader.stdout.readline())

    def batch(self, lines):
        live = [line for line in lines if line.strip()]
        self.agent.send(b"".join(line + b"\n" for line in lines))
        self.sent += len(live)
        for line in live:
            reply = self.agent.next_reply(timeout=30)
            assert reply["id"] == expected_id(line), (line[:200], reply)
            assert self.agent.proc.poll() is None
            if not reply["ok"]:
                assert reply["error"]["type"] in (protocol.E_BAD_REQUEST, protocol.E_UNKNOWN_OP,
                                                  protocol.E_VALIDATION, protocol.E_OS), reply
                continue
            self.account(json.loads(line.decode("utf-8")), reply["result"])
        now = self.snapshot()
        changed = {n for n in now if n not in self.ignored and now[n] != self.expected.get(n)}
        assert not changed, {n: (self.expected.get(n), now[n]) for n in changed}

    def account(self, request, result):
        op, args = request.get("op"), request.get("args")
        if op == "apply":
            for name, value in result["applied"].items():
                assert name in args["values"] and name in KNOBS, name
                bound = (args.get("bounds") or {}).get(name) or {}
                for key, inside in (("min", lambda v, b: v >= b), ("max", lambda v, b: v <= b)):
                    if isinstance(bound.get(key), int):
                        assert all(inside(int(w), bound[key]) for w in value.split()), (name, value, bound)
                self.expected[name] = value
        elif op in ("restore", "bye"):
            for name, value in list(result["restored"].items()) + list(result["unchanged"].items()):
                self.expected[name] = value

    def close(self):
        self.agent.close_stdin()
        assert self.agent.wait(30) == 0, self.agent.stderr()
        final = self.snapshot()
        assert {n: v for n, v in final.items() if n not in self.ignored} == \
               {n: v for n, v in self.original.items() if n not in self.ignored}
        return self.agent.stderr()


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_requests_never_crash_the_agent_nor_write_unvalidated(state, payload, seed):
    netns = Netns()
    fuzzer = Fuzzer(netns, state, payload)
    started = time.monotonic()
    try:
        @settings(max_examples=BATCHES // 2, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(requests(fuzzer.original), min_size=PER_BATCH, max_size=PER_BATCH))
        def run_batch(lines):
            fuzzer.batch(lines)

        run_batch()
        stderr = fuzzer.close()
    finally:
        fuzzer.agent.stop()
        fuzzer.reader.kill()
        fuzzer.reader.wait(10)
        netns.close()
    elapsed = time.monotonic() - started
    print("fuzz seed %d: %d requests in %.1f s" % (seed, fuzzer.sent, elapsed))
    assert fuzzer.sent >= 5000  # blank lines get no reply and are not counted
    assert "Traceback" not in stderr


def test_oversized_lines_are_refused_and_the_agent_keeps_going(state, payload):
    netns = Netns()
    agent = Agent(netns, state, payload)
    try:
        huge = json.dumps({"id": 5, "op": "apply",
                           "args": {"values": {"net.core.somaxconn": "1" * (protocol.MAX_LINE)}}})
        agent.send(huge.encode() + b"\n")  # over the limit by its JSON: one BadRequest, id unknown
        assert agent.next_reply(timeout=60) == {"id": None, "ok": False, "error": {
            "type": "BadRequest", "message": "line longer than %d bytes" % protocol.MAX_LINE}}
        near = json.dumps({"id": 6, "op": "apply", "args": {"values": {"net.core.somaxconn": "1" * (1 << 20)}}})
        agent.send(near.encode() + b"\n")
        reply = agent.next_reply(timeout=60)
        assert reply["id"] == 6 and reply["result"]["refused"]["net.core.somaxconn"]["type"] == "ValidationError"
        assert agent.call("ping")["time"] > 0
        agent.close_stdin()
        assert agent.wait(30) == 0
    finally:
        agent.stop()
        netns.close()
