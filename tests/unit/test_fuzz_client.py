"""Fuzzing the controller's end of the protocol (controller/fleet/client.py) with broken agents.

A real process stands in for the agent: it reads the request line and answers with lines
hypothesis made -- garbage bytes, JSON that is not a message, replies with wrong or mistyped ids,
missing or mistyped ``ok``/``error``/``result`` fields, events -- then exits. The client must
give back what the first reply with the request's id says, or raise AgentError / AgentGone; never
another exception, and never wait past its timeout.
"""

import json
import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.errors import AgentError, AgentGone, AgentTimeout
from controller.fleet.client import AgentClient
from controller.fleet.transport import LocalTransport
from node_agent import protocol

FAKE_AGENT = "import os, sys; sys.stdin.buffer.readline(); os.write(1, open(sys.argv[1], 'rb').read())"
LINGER = FAKE_AGENT + "; import time; time.sleep(5)"

leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=8))
anything = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6), inner, max_size=3), max_leaves=6)
ids = st.one_of(st.sampled_from([1, 1, 1, 1, 1, 1.0, True, "1", 2, 0, None]), st.integers(-2, 5))


@st.composite
def message(draw):
    msg = {}
    for key, values in (("id", ids), ("ok", st.sampled_from([True, True, False, False, 1, "true", None])),
                        ("result", anything),
                        ("error", st.one_of(anything, st.fixed_dictionaries(
                            {}, optional={"type": anything, "message": anything, "errno": anything}))),
                        ("event", st.sampled_from(["sample", 1]))):
        if draw(st.integers(0, 3)) > {"id": 0, "error": 0, "event": 2}.get(key, 1):
            msg[key] = draw(values)
    return json.dumps(msg).encode()


garbage = st.one_of(st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")),
                   anything.map(lambda v: json.dumps(v).encode()))
line = st.integers(0, 9).flatmap(lambda k: garbage if k == 0 else message())  # mostly messages


def expected(lines):
    """What the protocol says a request with id 1 must end in, given these reply lines."""
    for raw in lines:
        try:
            msg = protocol.decode(raw)
        except protocol.ProtocolError:
            return AgentGone, None
        if "event" in msg or type(msg.get("id")) is not int or msg["id"] != 1:
            continue
        if msg.get("ok") is True:
            return "result", msg.get("result")
        return AgentError, None
    return AgentGone, None


def ask(tmp_path, data, linger=False, timeout=5.0):
    script = tmp_path / "reply"
    script.write_bytes(data)
    command = f"exec {sys.executable} -I -c \"{LINGER if linger else FAKE_AGENT}\" {script}"
    client = AgentClient(LocalTransport().start(command), "fuzzed")
    started = time.monotonic()
    try:
        return client.request("ping", timeout=timeout), None, time.monotonic() - started
    except AgentError as e:  # AgentGone and AgentTimeout are AgentErrors
        return None, e, time.monotonic() - started
    finally:
        client.abandon()


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(line, min_size=0, max_size=6), st.booleans())
def test_broken_replies_end_in_a_result_or_an_agent_error(tmp_path_factory, lines, newline_at_end):
    data = b"\n".join(lines) + (b"\n" if newline_at_end and lines else b"")
    kind, result = expected([raw for raw in data.split(b"\n") if raw.strip()])
    # a generous timeout (a loaded machine can take seconds to start the fake agent): a request that
    # waited for it instead of ending on the replies or their EOF ends in AgentTimeout, never expected
    value, error, _ = ask(tmp_path_factory.mktemp("f"), data, timeout=30.0)
    if kind == "result":
        assert error is None and value == result, (error, value)
    else:
        assert isinstance(error, kind) and value is None, (error, value)
        assert error.host == "fuzzed" and isinstance(error.message, str) and isinstance(error.etype, str)


def test_an_agent_that_answers_nothing_useful_times_out(tmp_path):
    value, error, elapsed = ask(tmp_path, b'{"id": 2, "ok": true}\n{"id": "1", "ok": true}\n', linger=True,
                                timeout=0.5)
    assert isinstance(error, AgentTimeout) and elapsed < 3


def test_a_line_over_the_limit_is_refused(tmp_path):
    data = b'{"id": 1, "ok": true, "result": "' + b"x" * protocol.MAX_LINE + b'"}\n'
    value, error, _ = ask(tmp_path, data)
    assert isinstance(error, AgentGone) and "longer than" in error.message
