"""bench/real.py's page section: the rows and the findings it reads from them (make bench-real
measures them on the local fleet; here the judging is checked on results of known shape)."""

from __future__ import annotations

from bench.real import findings, section


def comparison(change: float, low: float, high: float, significant: bool) -> dict:
    return {"change_pct": change, "ci_low_pct": low, "ci_high_pct": high, "significant": significant,
            "baseline_median": 100.0, "best_median": 100.0 * (1 + change / 100)}


def entry(key: str, best: dict, arms: dict, metric: str = "requests_per_second") -> dict:
    return {"key": key, "minutes": 1.0, "hosts": "h1", "result": {
        "verification": best, "best_config": {"net.core.somaxconn": "1024"}, "evaluations": 24,
        "reward_metric": metric, "arms": {name: {"values": {"net.core.somaxconn": "2048"}, "verification": v,
                                                 "best_vs": vs} for name, (v, vs) in arms.items()}}}


def data(*runs) -> dict:
    return {"runs": list(runs), "verify_repeats": 6, "minutes": 3.0, "json": "x.json", "command": "bench"}


def test_a_gain_is_judged_against_the_best_profile_by_their_direct_comparison():
    tie = entry("web", comparison(80, 78, 82, True), {
        "tuned:a": (comparison(79, 77, 81, True), comparison(1, -2, 3, False)),
        "tuned:b": (comparison(-1, -5, 3, False), comparison(81, 79, 83, True))})
    better = entry("db", comparison(20, 10, 30, True), {
        "tuned:c": (comparison(5, 1, 9, True), comparison(14, 6, 22, True))})
    said = findings(data(tie, better))
    assert said[0] == ("- **web**: tunefleet +80.0% [+78.0, +82.0]; the best profile, tuned:a, +79.0% [+77.0, +81.0]: "
                       "tie.")
    assert said[1].endswith("the best profile, tuned:c, +5.0% [+1.0, +9.0]: tunefleet better.")


def test_a_profile_that_costs_is_named_and_quiet_workloads_are_listed_with_the_control():
    cost = entry("files", comparison(-1, -7, 5, False), {
        "tuned:pg": (comparison(-64, -67, -61, True), comparison(175, 155, 196, True))})
    control = entry("cpu", comparison(-0.6, -1.8, 2.0, False), {
        "tuned:a": (comparison(-1, -3, 1, False), comparison(0.5, -1, 2, False))})
    said = findings(data(cost, control))
    assert said[0] == "- **files**: tuned:pg costs -64.0% [-67.0, -61.0] against the original."
    assert said[-1] == ("- No arm shows a significant gain on files (widest interval -7 to +5%), cpu (widest interval "
                        "-3 to +1%) (cpu is the control: no knob should matter there).")


def test_the_section_has_a_row_per_arm_and_the_failures_in_words():
    page = section(data(entry("web", comparison(80, 78, 82, True), {
        "tuned:a": (comparison(79, 77, 81, True), comparison(1, -2, 3, False))}),
        {"key": "link", "error": "h2 unreachable", "minutes": 0.1}))
    assert "| web (h1, 1.0 min) | original |" in page and "| | tuned:a | core.somaxconn=2048 |" in page
    assert "| link | failed: h2 unreachable |" in page
