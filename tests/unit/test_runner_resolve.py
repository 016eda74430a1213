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
