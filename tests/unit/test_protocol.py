"""The wire codec both ends import: names, values, lines, request checks."""

import json

import pytest

from node_agent import protocol


@pytest.mark.parametrize("name", [
    "net.core.somaxconn", "net.ipv4.tcp_rmem", "vm.dirty_ratio",
    "net.ipv4.conf.veth-a.rp_filter", "net.ipv6.conf.all.disable_ipv6", "kernel.sched_rt_period_us",
])
def test_plain_sysctl_names_are_accepted(name):
    assert protocol.is_sysctl_name(name)
    assert protocol.sysctl_path(name) == "/proc/sys/" + name.replace(".", "/")


@pytest.mark.parametrize("name", [
    "", "somaxconn", "../../etc/passwd", "net.core.somaxconn; rm -rf /", "net/core/somaxconn",
    "net.core..somaxconn", "net.core.somaxconn.", ".net.core", "Net.core.somaxconn",
    "net.core.$(reboot)", "net.core.some maxconn", "net.core.somaxconn\n", "net." + "a" * 300,
    None, 12, ["net.core.somaxconn"],
])
def test_anything_else_is_refused(name):
    assert not protocol.is_sysctl_name(name)
    with pytest.raises(ValueError):
        protocol.sysctl_path(name)


def test_sysctl_path_with_another_root():
    assert protocol.sysctl_path("net.core.somaxconn", "/tmp/x") == "/tmp/x/net/core/somaxconn"


@pytest.mark.parametrize("value, text", [
    (12, "12"), ("12", "12"), (" 12\n", "12"), (12.0, "12"), (-1, "-1"),
    ([4096, 87380, 6291456], "4096 87380 6291456"), ((1, 2), "1 2"),
    ("4096\t87380\t6291456\n", "4096 87380 6291456"), ("bbr", "bbr"), ("", ""),
])
def test_values_are_normalized_to_kernel_text(value, text):
    assert protocol.normalize_value(value) == text


# JSON readers take Infinity and NaN
@pytest.mark.parametrize("value", [True, False, 1.5, [1, 2.5], float("inf"), float("-inf"), float("nan")])
def test_values_that_are_not_sysctl_text_are_refused(value):
    with pytest.raises(ValueError):
        protocol.normalize_value(value)


def test_encode_is_one_compact_line_and_decodes_back():
    message = protocol.request(7, "apply", {"values": {"net.core.somaxconn": 1024}})
    line = protocol.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert b" " not in line
    assert protocol.decode(line) == message
    assert protocol.decode(line.decode()) == message


def test_encode_escapes_newlines_inside_strings():
    line = protocol.encode(protocol.reply(1, {"stdout_tail": "a\nb\n"}))
    assert line.count(b"\n") == 1
    assert protocol.decode(line)["result"]["stdout_tail"] == "a\nb\n"


@pytest.mark.parametrize("line", [b"", b"   \n", b"not json", b"[1, 2]", b"\xff\xfe", b'"text"'])
def test_decode_refuses_what_is_not_a_message(line):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(line)


def test_message_shapes():
    assert protocol.request(1, "ping") == {"id": 1, "op": "ping", "args": {}}
    assert protocol.reply(2, {"a": 1}) == {"id": 2, "ok": True, "result": {"a": 1}}
    assert protocol.failure(3, protocol.E_VALIDATION, ValueError("no")) == {
        "id": 3, "ok": False, "error": {"type": "ValidationError", "message": "no"}}
    assert protocol.event(4, "sample", {"t": 1}) == {"event": "sample", "id": 4, "data": {"t": 1}}


def test_check_request_returns_its_parts():
    assert protocol.check_request({"id": 5, "op": "read", "args": {"names": []}}) == (
        5, "read", {"names": []})
    assert protocol.check_request({"id": 6, "op": "ping"}) == (6, "ping", {})


@pytest.mark.parametrize("message", [
    {"op": "ping"}, {"id": "1", "op": "ping"}, {"id": True, "op": "ping"}, {"id": 1.5, "op": "ping"},
    {"id": 1}, {"id": 1, "op": 3}, {"id": 1, "op": "ping", "args": []},
])
def test_check_request_refuses_malformed_requests(message):
    with pytest.raises(protocol.ProtocolError):
        protocol.check_request(message)


def test_every_op_and_error_type_is_declared_once():
    assert len(set(protocol.OPS)) == len(protocol.OPS)
    assert {"hello", "ping", "describe", "read", "watch", "scan", "apply", "restore", "sample", "run", "on_exit",
            "persist", "unpersist", "link_up", "link_down", "bye"} == set(protocol.OPS)
    from node_agent.agent import Agent

    assert all(callable(getattr(Agent, "op_" + op, None)) for op in protocol.OPS)
    types = {protocol.E_BAD_REQUEST, protocol.E_UNKNOWN_OP, protocol.E_VALIDATION, protocol.E_OS,
             protocol.E_TIMEOUT, protocol.E_INTERNAL, protocol.E_DRIFT}
    assert len(types) == 7


def test_lines_are_plain_json_for_other_implementations():
    line = protocol.encode(protocol.reply(1, {"values": {"net.core.somaxconn": "4096"}}))
    assert json.loads(line) == {"id": 1, "ok": True, "result": {"values": {"net.core.somaxconn": "4096"}}}
