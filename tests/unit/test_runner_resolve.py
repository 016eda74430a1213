"""runner.resolve: a relative command such as ./bench.sh is taken from the run's cwd."""

import errno
import os

import pytest

from node_agent import runner


def test_a_relative_command_is_found_in_its_cwd_not_the_agents(tmp_path):
    script = tmp_path / "bench.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert runner.resolve(["./bench.sh", "-x"], str(tmp_path)) == [os.path.join(str(tmp_path), "./bench.sh"), "-x"]
    with pytest.raises(OSError) as e:
        runner.resolve(["./bench.sh"], str(tmp_path / "elsewhere"))
    assert e.value.errno == errno.ENOENT


def test_a_bare_name_found_once_is_looked_for_again_when_it_is_gone(tmp_path, monkeypatch):
    """find_program remembers where a bare name was (the search is costlier than the benchmark's
    start), but a program removed since is searched for again, not run from where it was."""
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        program = folder / "tunefleet-test-bench"
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{first}:{second}")
    found = runner.resolve(["tunefleet-test-bench"])[0]
    assert found == str(first / "tunefleet-test-bench")
    assert runner.resolve(["tunefleet-test-bench"])[0] == found
    (first / "tunefleet-test-bench").unlink()
    assert runner.resolve(["tunefleet-test-bench"])[0] == str(second / "tunefleet-test-bench")
    (second / "tunefleet-test-bench").unlink()
    with pytest.raises(OSError) as e:
        runner.resolve(["tunefleet-test-bench"])
    assert e.value.errno == errno.ENOENT
