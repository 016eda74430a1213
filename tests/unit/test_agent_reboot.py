"""What an agent does with a journal left by an earlier boot: it discards it and says so, and never
writes those originals back over the values the new boot set.

The process test reboots honestly as far as one machine allows: the first agent is killed (a hard
reset: nobody restores), the network namespace it tuned is thrown away and a new one made (every
per-namespace knob back at the kernel's default, as a reboot leaves the network stack), and the
second agent runs in a mount namespace where /proc/sys/kernel/random/boot_id is another boot's
(a bind mount, as container runtimes present per-container /proc files). The agent reads the same
path it reads in production; nothing in it knows about the test.
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid

from node_agent import journal
from tests.unit.test_agent_process import SOMAXCONN, Agent, Netns, payload  # noqa: F401  (fixture)


def _write(path, boot_id, entries):
    path.write_text(json.dumps({"format": 1, "boot_id": boot_id, "entries": entries}))


def test_recover_discards_both_journals_of_an_earlier_boot_and_writes_nothing(tmp_path):
    _write(tmp_path / journal.JOURNAL, "boot-a", [[SOMAXCONN, "300"], ["net.ipv4.tcp_fin_timeout", "60"]])
    _write(tmp_path / journal.KEPT, "boot-a", [["net.ipv4.tcp_tw_reuse", "2"]])
    writes = []
    report = journal.Journal(str(tmp_path), "boot-b").recover(lambda n, v: writes.append((n, v)))
    assert writes == []
    discarded = {
        journal.JOURNAL: {"boot_id": "boot-a", "originals": {SOMAXCONN: "300", "net.ipv4.tcp_fin_timeout": "60"},
                          "written": {}},
        journal.KEPT: {"boot_id": "boot-a", "originals": {"net.ipv4.tcp_tw_reuse": "2"}, "written": {}}}
    assert report == {"restored": {}, "unchanged": {}, "errors": {}, "foreign": {}, "discarded": discarded}
    # nothing left to write back; only the record of what the reboot undid, until a restore reports it
    assert sorted(p.name for p in tmp_path.iterdir()) == [journal.EARLIER]
    assert journal.read_earlier(str(tmp_path)) == discarded


def test_recover_restores_a_journal_of_this_boot_and_discards_nothing(tmp_path):
    _write(tmp_path / journal.JOURNAL, "boot-b", [[SOMAXCONN, "300"]])
    writes = []
    report = journal.Journal(str(tmp_path), "boot-b").recover(lambda n, v: writes.append((n, v)))
    assert writes == [(SOMAXCONN, "300")]
    assert report["restored"] == {SOMAXCONN: "300"} and report["discarded"] == {}


class RebootedNetns(Netns):
    """A fresh network namespace whose processes see `boot_id` in /proc/sys/kernel/random/boot_id."""

    def __init__(self, boot_id_file):
        script = ("mount --bind %s /proc/sys/kernel/random/boot_id && ip link set lo up && echo ready "
                  "&& exec sleep 300" % boot_id_file)
        self.holder = subprocess.Popen(["unshare", "-n", "-m", "--propagation", "private", "sh", "-c", script],
                                       stdout=subprocess.PIPE)
        assert self.holder.stdout.readline() == b"ready\n"

    def wrap(self, argv):
        return ["nsenter", "--net=/proc/%d/ns/net" % self.holder.pid, "--mount=/proc/%d/ns/mnt" % self.holder.pid] + \
            [str(a) for a in argv]


def test_after_a_reboot_the_old_journal_is_discarded_not_replayed(payload, tmp_path):  # noqa: F811
    state = tmp_path / "state"
    before = Netns()
    try:
        # boot A's config
        subprocess.run(before.wrap(["sh", "-c", "echo 300 > /proc/sys/net/core/somaxconn"]), check=True)
        crashed = Agent(before, state, payload)
        old_boot = crashed.call("hello")["boot_id"]
        crashed.call("apply", {"values": {SOMAXCONN: "555"}})
        crashed.proc.send_signal(signal.SIGKILL)  # a hard reset: nobody restores
        crashed.wait()
        crashed.stop()
    finally:
        before.close()
    assert json.loads((state / journal.JOURNAL).read_text())["entries"] == [[SOMAXCONN, "300"]]

    new_boot = str(uuid.uuid4())
    (tmp_path / "boot_id").write_text(new_boot + "\n")
    after = RebootedNetns(tmp_path / "boot_id")
    try:
        booted_at = after.sysctl(SOMAXCONN)  # the kernel's default for a new namespace
        assert booted_at != "300"
        agent = Agent(after, state, payload)
        try:
            facts = agent.call("hello")
            assert facts["boot_id"] == new_boot != old_boot
            assert facts["recovered"] == {} and facts["journaled"] == []
            assert facts["discarded"] == {journal.JOURNAL: {"boot_id": old_boot, "originals": {SOMAXCONN: "300"},
                                                            "written": {SOMAXCONN: "555"}}}
            assert after.sysctl(SOMAXCONN) == booted_at  # not the old boot's 300
            assert not (state / journal.JOURNAL).exists()
            # this boot's own changes are journaled and restored as usual
            agent.call("apply", {"values": {SOMAXCONN: "556"}})
            assert agent.call("bye")["restored"] == {SOMAXCONN: booted_at}
            assert after.sysctl(SOMAXCONN) == booted_at
        finally:
            agent.stop()
    finally:
        after.close()
