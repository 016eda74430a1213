"""--strategy auto: ppo from a policy with enough training behind it, bo otherwise."""

from __future__ import annotations

from controller.learn import search
from controller.learn.policystore import PolicyStore
from controller.learn.simfleet import member, sim_fleet
from controller.runs import RunDir
from controller.tuner import QuietReporter, RunOptions, tune


def _tune(m, tmp_path, name, store, **kw):
    messages = []

    class Say(QuietReporter):
        def message(self, text):
            messages.append(text)

    run = RunDir.create(m.spec().workload_name, tmp_path / name)
    try:
        result = tune(m.spec(), sim_fleet(m, 3, seed=4), run,
                      RunOptions(budget=12, seed=4, verify_repeats=2, policy_store=store, **kw), Say())
    finally:
        run.close()
    return result, messages


def test_auto_is_bo_until_a_policy_has_enough_training_behind_it(tmp_path, monkeypatch):
    monkeypatch.setattr(search, "AUTO_MIN_TRAINED", 20)
    store = PolicyStore(tmp_path / "policies")
    m = member(1, 4)
    result, said = _tune(m, tmp_path, "empty", store, strategy="auto")
    assert result["strategy"] == "bo" and any("no trained policy" in s for s in said)

    _tune(member(2, 4), tmp_path, "train1", store, strategy="ppo")  # 12 evaluations behind the policy
    result, said = _tune(m, tmp_path, "young", store, strategy="auto")
    assert result["strategy"] == "bo" and any("has 12 evaluations behind it" in s for s in said)

    _tune(member(3, 4), tmp_path, "train2", store, strategy="ppo")  # started from the first: 24 in all
    newest = store.find(m.spec(), "")
    assert search.trained_evaluations(store, newest) == 24
    result, said = _tune(m, tmp_path, "trained", store, strategy="auto")
    assert result["strategy"] == "ppo" and result["policy"]["started_from"].endswith(newest.file)
    assert any("24 evaluations behind it" in s for s in said)

    result, _ = _tune(m, tmp_path, "cold", store, strategy="auto", policy="none")
    assert result["strategy"] == "bo"
