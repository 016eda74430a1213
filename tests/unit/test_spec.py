"""TuningSpec: the seed's config shape, YAML, one-line errors, action mapping, round trip."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from controller.errors import SpecError
from controller.spec import Knob, RewardParseError, TuningSpec

BENCH = Path(__file__).resolve().parents[1] / "fixtures" / "bench"

# Exactly the config_json of the seed (/work/shared/seeds), as an LLM would hand it over.
SEED_JSON = """{
  "workload_name": "PostgreSQL OLTP",
  "reward_metric": "transactions_per_second",
  "benchmark_command": "pgbench -c 50 -j 4 -T 30 testdb",
  "action_space": [
    {"param": "vm.dirty_ratio", "min": 5, "max": 80}
  ],
  "state_space": [
    {"metric": "cpu_utilization", "source": "/proc/stat"}
  ]
}"""

FULL_YAML = """
workload_name: network throughput
description: bulk transfer over loopback
reward_metric: throughput_mb_s
benchmark_command: tunefleet-bench stream --mb 64
benchmark_timeout: 60
baseline_repeats: 5
action_space:
  - param: net.ipv4.tcp_rmem
    min: 4096 4096 4096
    max: 4096 131072 6291456
    rationale: receive window
  - param: net.ipv4.tcp_congestion_control
    values: [cubic, reno]
  - param: net.core.somaxconn
    min: 16
    max: 4096
    scale: linear
state_space:
  - {metric: net_rx_mb_per_s}
training_config: {total_timesteps: 24, learning_rate: 0.0003}
owner: team-db          # an extra field the spec keeps
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def spec_with(*knobs, **extra):
    return TuningSpec.from_dict({"workload_name": "w", "reward_metric": "tps",
                                 "benchmark_command": "pgbench -T 5 pgbench", "action_space": list(knobs), **extra})


def one_line_error(path) -> str:
    with pytest.raises(SpecError) as e:
        TuningSpec.load(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    return msg


# --- loading ------------------------------------------------------------------------------


def test_seed_json_as_is(tmp_path):
    spec = TuningSpec.load(write(tmp_path, "seed.json", SEED_JSON))
    assert spec.workload_name == "PostgreSQL OLTP"
    assert spec.knob_names == ["vm.dirty_ratio"]
    assert spec.goal == "maximize"
    assert spec.action_dim == 1
    assert spec.state_space[0].metric == "cpu_utilization"
    assert spec.training_config == {}
    assert spec.benchmark_timeout == 120 and spec.baseline_repeats == 3
    assert spec.action_space[0].scale == "linear"  # 80/5 < 100


def test_seed_json_without_extension_is_read_by_content(tmp_path):
    spec = TuningSpec.load(write(tmp_path, "config", SEED_JSON))
    assert spec.knob_names == ["vm.dirty_ratio"]


def test_yaml_with_every_optional_field(tmp_path):
    spec = TuningSpec.load(write(tmp_path, "spec.yml", FULL_YAML))
    assert spec.knob_names == ["net.ipv4.tcp_rmem", "net.ipv4.tcp_congestion_control", "net.core.somaxconn"]
    rmem, cc, somax = spec.action_space
    assert rmem.min == [4096, 4096, 4096] and rmem.max == [4096, 131072, 6291456]
    assert rmem.dims == 2 and rmem.scale == "log" and rmem.rationale == "receive window"
    assert cc.dims == 1 and cc.values == ["cubic", "reno"]
    assert somax.scale == "linear"
    assert spec.action_dim == 4
    assert spec.benchmark_timeout == 60 and spec.baseline_repeats == 5
    assert spec.training_config["total_timesteps"] == 24
    assert spec.to_dict()["owner"] == "team-db"


def test_round_trip(tmp_path):
    spec = TuningSpec.load(write(tmp_path, "spec.yaml", FULL_YAML))
    data = spec.to_dict()
    again = TuningSpec.from_dict(json.loads(json.dumps(data)))
    assert again.to_dict() == data
    assert again == spec
    # and through a file
    back = TuningSpec.load(write(tmp_path, "back.json", json.dumps(data)))
    assert back.to_dict() == data


def test_goal_follows_the_metric_unless_given():
    knob = {"param": "net.core.somaxconn", "min": 16, "max": 4096}
    storm = TuningSpec.from_dict({"workload_name": "s", "reward_metric": "elapsed_ms",
                                  "benchmark_command": "tunefleet-bench accept-storm", "action_space": [knob]})
    assert storm.goal == "minimize"
    assert spec_with(knob, reward_goal="minimize").goal == "minimize"
    assert spec_with(knob).goal == "maximize"


def test_custom_reward_pattern(tmp_path):
    spec = spec_with({"param": "vm.swappiness", "min": 0, "max": 100},
                     reward_metric="my_ops", reward_pattern=r"ops/s: ([0-9.]+)", reward_goal="maximize")
    assert spec.parse_reward("warmup\nops/s: 12.5\n") == 12.5
    with pytest.raises(RewardParseError):
        spec.parse_reward("nothing here")


def test_parse_reward_on_real_output():
    spec = TuningSpec.from_dict(json.loads(SEED_JSON))
    assert spec.parse_reward((BENCH / "pgbench.txt").read_text()) == pytest.approx(1519.657831)


# --- bad files: one clear line naming the file and the field ----------------------------------


def test_not_json(tmp_path):
    msg = one_line_error(write(tmp_path, "spec.json", '{"workload_name": "x", '))
    assert "not valid JSON" in msg


def test_not_yaml(tmp_path):
    msg = one_line_error(write(tmp_path, "spec.yml", "workload_name: [unclosed\n  - x: {\n"))
    assert "not valid YAML" in msg and "line" in msg


def test_not_an_object(tmp_path):
    msg = one_line_error(write(tmp_path, "spec.yml", "- just\n- a list\n"))
    assert "must be an object" in msg


def test_missing_file(tmp_path):
    msg = one_line_error(tmp_path / "nope.json")
    assert "cannot read" in msg


def test_missing_field(tmp_path):
    data = json.loads(SEED_JSON)
    del data["benchmark_command"]
    msg = one_line_error(write(tmp_path, "spec.json", json.dumps(data)))
    assert msg == f"{tmp_path / 'spec.json'}: benchmark_command: missing (required)"


def test_min_greater_than_max(tmp_path):
    text = FULL_YAML.replace("    min: 16\n    max: 4096", "    min: 4096\n    max: 16")
    msg = one_line_error(write(tmp_path, "spec.yml", text))
    assert msg.startswith(f"{tmp_path / 'spec.yml'}: action_space[2].max: must be >= min")


def test_vector_length_mismatch(tmp_path):
    text = FULL_YAML.replace("max: 4096 131072 6291456", "max: 4096 131072")
    msg = one_line_error(write(tmp_path, "spec.yml", text))
    assert "action_space[0].max" in msg and "components" in msg


def test_unknown_metric_names_known_ones(tmp_path):
    text = FULL_YAML.replace("reward_metric: throughput_mb_s", "reward_metric: bogomips")
    msg = one_line_error(write(tmp_path, "spec.yml", text))
    assert "reward_metric" in msg and "bogomips" in msg and "elapsed_ms" in msg


@pytest.mark.parametrize("knob, field, words", [
    ({"param": "vm.swappiness", "min": 0}, "action_space[0].max", "missing"),
    ({"param": "vm.swappiness", "min": "zero", "max": 10}, "action_space[0].min", "integers"),
    ({"param": "vm.swappiness", "min": 0.5, "max": 10}, "action_space[0].min", "integer"),
    ({"param": "vm.swappiness", "min": 0, "max": 10, "scale": "cubic"}, "action_space[0].scale", ""),
    ({"param": "vm.swappiness", "min": 0, "max": 1000, "scale": "log"}, "action_space[0].scale", "min > 0"),
    ({"param": "x.y", "values": []}, "action_space[0].values", "non-empty"),
    ({"param": "x.y", "values": ["a", "a"]}, "action_space[0].values", "twice"),
    ({"param": "x.y", "values": ["a"], "min": 1, "max": 2}, "action_space[0].values", "either"),
    ({"param": "x.y", "min": "5 1", "max": "9 9"}, "action_space[0].min", "non-decreasing"),
    ({"param": "x.y", "min": "1 5", "max": "9 4"}, "action_space[0].max", "component 2"),
    ({"param": "x.y", "min": 3, "max": 3}, "action_space", "nothing to tune"),
])
def test_bad_knobs(knob, field, words):
    with pytest.raises(SpecError) as e:
        spec_with(knob)
    msg = str(e.value)
    assert msg.startswith(f"spec: {field}:"), msg
    assert words in msg


def test_extra_fields_are_kept_not_rejected():
    spec = spec_with({"param": "vm.swappiness", "min": 0, "max": 100, "unit": "%"}, owner="db-team")
    data = spec.to_dict()
    assert data["owner"] == "db-team" and data["action_space"][0]["unit"] == "%"


# --- mapping ----------------------------------------------------------------------------------


def test_int_linear_mapping_and_clipping():
    knob = Knob(param="vm.dirty_ratio", min=5, max=80)
    assert knob.dims == 1 and knob.scale == "linear"
    assert knob.to_value([-1.0]) == "5"
    assert knob.to_value([1.0]) == "80"
    assert knob.to_value([0.0]) == str(round(42.5))
    assert knob.to_value([7.0]) == "80" and knob.to_value([-3.0]) == "5"  # clipped
    assert knob.to_value([float("nan")]) == knob.to_value([0.0])
    assert knob.to_unit("5") == [-1.0] and knob.to_unit("80") == [1.0]
    assert knob.to_unit("200") == [1.0]  # clipped
    assert knob.to_unit("garbage") == [0.0] and knob.to_unit(None) == [0.0]


def test_log_scale_is_default_for_wide_ranges():
    knob = Knob(param="net.core.somaxconn", min=16, max=4096)
    assert knob.scale == "log"
    assert knob.to_value([0.0]) == "256"  # geometric middle of 16..4096
    assert knob.to_unit("256") == pytest.approx([0.0])
    assert Knob(param="net.core.somaxconn", min=0, max=4096).scale == "linear"  # log needs min > 0


def test_to_unit_inverts_to_value():
    rng = np.random.default_rng(7)
    for knob in (Knob(param="a.b", min=16, max=4096), Knob(param="a.b", min=5, max=80),
                 Knob(param="a.b", min="4096 4096 4096", max="4096 131072 6291456"),
                 Knob(param="a.b", values=["cubic", "reno", "bbr"])):
        for _ in range(50):
            value = knob.to_value(rng.uniform(-1, 1, knob.dims))
            assert knob.contains(value)
            assert knob.to_value(knob.to_unit(value)) == value


def test_choices_are_equal_bins():
    knob = Knob(param="net.ipv4.tcp_congestion_control", values=["cubic", "reno", "bbr"])
    picks = [knob.to_value([a]) for a in np.linspace(-1, 1, 300)]
    assert [picks.count(c) for c in ("cubic", "reno", "bbr")] == [100, 100, 100]
    assert knob.to_value([1.0]) == "bbr" and knob.to_value([-1.0]) == "cubic"
    assert knob.to_unit("reno") == [0.0]
    assert knob.to_unit("vegas") == [0.0]  # unknown choice
    assert knob.to_unit("cubic")[0] < 0 < knob.to_unit("bbr")[0]
    numeric = Knob(param="net.ipv4.tcp_tw_reuse", values=[0, 1, 2])
    assert numeric.values == ["0", "1", "2"] and numeric.to_value([1]) == "2"


def test_vector_with_fixed_components_and_order():
    knob = Knob(param="net.ipv4.tcp_rmem", min="4096 4096 4096", max="4096 131072 6291456")
    assert knob.dims == 2 and knob.components == 3
    assert knob.to_value([-1, -1]) == "4096 4096 4096"
    assert knob.to_value([1, 1]) == "4096 131072 6291456"
    # default above max is repaired: components never decrease
    words = [int(w) for w in knob.to_value([1.0, -1.0]).split()]
    assert words == [4096, 131072, 131072]
    rng = np.random.default_rng(1)
    for _ in range(200):
        words = [int(w) for w in knob.to_value(rng.uniform(-1, 1, 2)).split()]
        assert words[0] == 4096 and words == sorted(words)
    assert knob.contains("4096\t87380\t6291456")  # the kernel's tab-separated form
    assert not knob.contains("4096 87380")
    assert not knob.contains("8192 87380 6291456")
    assert knob.to_unit("4096 87380") == [0.0, 0.0]  # wrong shape reads as unknown


def test_vector_as_lists_and_single_element_lists():
    knob = Knob(param="net.ipv4.ip_local_port_range", min=[1024, 60999], max=["32768", 60999])
    assert knob.dims == 1 and knob.to_value([-1]) == "1024 60999"
    assert Knob(param="a.b", min=[5], max=[80]).min == 5


def test_spec_splits_the_flat_action():
    spec = spec_with({"param": "net.ipv4.tcp_rmem", "min": "4096 4096 4096", "max": "4096 131072 6291456"},
                     {"param": "net.ipv4.tcp_congestion_control", "values": ["cubic", "reno"]},
                     {"param": "net.core.somaxconn", "min": 16, "max": 4096})
    assert spec.action_dim == 4
    values = spec.to_values(np.array([-1.0, 1.0, 0.9, 0.0]))
    assert values == {"net.ipv4.tcp_rmem": "4096 4096 6291456", "net.ipv4.tcp_congestion_control": "reno",
                      "net.core.somaxconn": "256"}
    unit = spec.to_unit(values)
    assert unit.shape == (4,) and np.all(np.abs(unit) <= 1)
    assert spec.to_values(unit) == values
    assert list(spec.to_unit({})) == [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        spec.to_values(np.zeros(3))


def test_huge_integers_stay_exact():
    knob = Knob(param="fs.file-max", min=524288, max=9223372036854775807)
    assert knob.to_value([1.0]) == "9223372036854775807"
    assert knob.to_value([-1.0]) == "524288"
    assert math.isclose(knob.to_unit("9223372036854775807")[0], 1.0)
