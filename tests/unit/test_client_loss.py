"""When an agent is lost, the error names the reason its last stderr line gives, even when that line
comes a moment after the loss was seen (an agent restoring, then logging, then exiting): whether its
output ended during a request or the next request could not be sent."""

from __future__ import annotations

import time

import pytest

from controller.errors import AgentGone
from controller.fleet.client import AgentClient
from controller.fleet.transport import LocalTransport


def test_an_agent_whose_output_ends_is_lost_with_its_own_reason():
    # reads the request, closes its stdout, and only then says why it stops
    fake = "read line; exec 1>&-; sleep 0.3; echo 'stopping (no heartbeat for 3 s): restored 1 knob(s)' >&2"
    client = AgentClient(LocalTransport().start(fake), "h1", heartbeat_every=0, silence=10)
    with pytest.raises(AgentGone) as lost:
        client.request("ping", timeout=10)
    assert lost.value.message.startswith("agent exited during 'ping'")
    assert "stopping (no heartbeat for 3 s)" in lost.value.message, lost.value.message


def test_an_agent_gone_before_the_request_is_lost_with_its_own_reason():
    # stops reading (its stdin closed: the request cannot be sent), and only then says why it stops
    fake = "exec 0<&-; sleep 0.3; echo 'stopping (idle for 1.5 s): restored 1 knob(s)' >&2"
    client = AgentClient(LocalTransport().start(fake), "h1", heartbeat_every=0, silence=10)
    time.sleep(0.1)
    with pytest.raises(AgentGone) as lost:
        client.request("ping", timeout=10)
    assert lost.value.message.startswith("cannot send to the agent")
    assert "stopping (idle for 1.5 s)" in lost.value.message, lost.value.message
