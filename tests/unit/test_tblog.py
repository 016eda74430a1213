"""run --tensorboard: the search's results written through torch's SummaryWriter and read back
with tensorboard's own reader."""

from __future__ import annotations

import pytest

from controller.learn.evaluation import Trial
from controller.tuner import QuietReporter

pytest.importorskip("tensorboard")


def test_search_results_land_as_scalars_per_host_and_fleet_best(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from controller.tblog import reporting

    def search(host, index, raw, reward=None, change=None, error=None):
        t = Trial(host, "search", {"k": str(index)}, index=index, raw=raw, reward=reward, error=error)
        t.change_pct = change  # the evaluator sets it: percent change against the host's baseline
        return t

    trials = [Trial("h1", "baseline", {}, index=0, raw=1000.0),
              search("h1", 1, 900.0, 0.1, 10.0), search("h2", 2, None, error="benchmark failed"),
              search("h2", 3, 500.0, 0.6, 50.0), search("h1", 4, 950.0, 0.05, 5.0),
              Trial("h1", "verify", {"k": "3"}, index=5, raw=510.0, label="B")]
    seen = []

    class Inner(QuietReporter):
        def trial(self, t):
            seen.append(t.index)

    with reporting(Inner(), tmp_path) as reporter:
        for t in trials:
            reporter.trial(t)
    assert seen == [0, 1, 2, 3, 4, 5]  # the live view still sees everything
    events = EventAccumulator(str(tmp_path / "search")).Reload()
    best = [(e.step, e.value) for e in events.Scalars("change_pct/fleet_best_so_far")]
    assert best == [(1, 10.0), (3, 50.0), (4, 50.0)]  # steps count search evaluations, failures too
    assert [(e.step, e.value) for e in events.Scalars("raw/h1")] == [(1, 900.0), (4, 950.0)]
    assert [e.value for e in events.Scalars("baseline/h1")] == [1000.0]


def test_ppo_training_curves_land_in_the_run_folder(tmp_path):
    """--tensorboard also carries PPO's own curves (stable-baselines3's logger), beside the csv."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from controller.learn.search import STRATEGIES
    from tests.unit import surface

    hosts = [surface.SurfaceHost(f"h{i}", seed=i) for i in range(3)]
    ctx = surface.context(hosts, surface.spec(), budget=12, seed=0, checkpoint_dir=tmp_path / "checkpoints",
                          tensorboard_dir=tmp_path / "tensorboard")
    (tmp_path / "checkpoints").mkdir()
    STRATEGIES["ppo"](ctx)
    runs = list((tmp_path / "tensorboard" / "ppo").iterdir())
    assert runs, "no PPO event file"
    tags = EventAccumulator(str(tmp_path / "tensorboard" / "ppo")).Reload().Tags()["scalars"]
    assert "train/policy_gradient_loss" in tags and "train/learning_rate" in tags, tags
    assert (tmp_path / "checkpoints" / "progress.csv").exists()  # the csv log is kept
