"""The persist path check: only *.conf files inside a sysctl.d folder, by absolute path."""

import pytest

from node_agent import persist


@pytest.mark.parametrize("path", ["/etc/sysctl.d/90-tunefleet.conf", "/tmp/x/sysctl.d/a.conf", None])
def test_accepted(path):
    assert persist.check_path(path).endswith(".conf")


@pytest.mark.parametrize("path", ["/etc/passwd", "relative/sysctl.d/a.conf", "/etc/sysctl.d/../passwd.conf",
                                  "/etc/sysctl.d/a.txt", "/etc/sysctl.conf", 7])
def test_refused(path):
    with pytest.raises(persist.BadPath):
        persist.check_path(path)


def test_persist_refuses_unknown_knobs_and_writes_nothing(tmp_path):
    from node_agent.sysctl import Refused

    target = tmp_path / "sysctl.d" / "90-tunefleet.conf"
    with pytest.raises(Refused):
        persist.persist({"net.core.somaxconn": 1024, "net.no_such.knob": 1}, str(target))
    assert not target.exists()
