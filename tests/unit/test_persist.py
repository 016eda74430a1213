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


def test_a_sysctl_d_reached_through_a_symlink_or_writable_by_others_is_refused(tmp_path):
    real = tmp_path / "real" / "sysctl.d"
    real.mkdir(parents=True)
    assert persist.check_path(str(real / "a.conf"))
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "sysctl.d").symlink_to(real)
    with pytest.raises(persist.BadPath, match="symlink"):
        persist.check_path(str(tmp_path / "link" / "sysctl.d" / "a.conf"))
    real.chmod(0o777)
    with pytest.raises(persist.BadPath, match="another user"):
        persist.check_path(str(real / "a.conf"))
