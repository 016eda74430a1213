"""The recorder numbers every evaluation and hands back the search phase's, all or one host's, in order."""

from __future__ import annotations

from controller.learn.evaluation import Recorder, Trial


def test_search_trials_are_the_search_phase_in_order_all_or_by_host():
    written: list[dict] = []
    rec = Recorder(append=written.append)
    phases = [("h1", "baseline"), ("h1", "search"), ("h2", "search"), ("h1", "verify"), ("h2", "search"),
              ("h1", "search"), ("h2", "confirm")]
    for i, (host, phase) in enumerate(phases):
        rec.record(Trial(host, phase, {"k": str(i)}))
    rec.replay(Trial("h2", "search", {"k": "replayed"}))  # a resumed run's: counted, not written again

    def ks(trials):
        return [t.values["k"] for t in trials]

    assert ks(rec.search_trials()) == ["1", "2", "4", "5", "replayed"]
    assert ks(rec.search_trials("h1")) == ["1", "5"] and ks(rec.search_trials("h2")) == ["2", "4", "replayed"]
    assert rec.search_trials("h9") == [] and rec.search_evaluations == 5
    assert [t.index for t in rec.trials] == list(range(8)) and len(written) == 7
    rec.search_trials("h1").clear()  # a copy: the caller's to keep or change
    assert ks(rec.search_trials("h1")) == ["1", "5"]
