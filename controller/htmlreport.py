"""report.html: one run told to a person, in one self-contained file.

Everything is drawn from the run folder (history.load_run), so `tunefleet report RUN_DIR` can
rebuild the page of any past run. The page carries no script, font or link to fetch: it opens
from a mail attachment or an air-gapped host the same way. Charts are inline SVG (svgplot).

Changes are shown as "% better than the host's baseline median" with the sign turned so that up
is better for a minimized metric too: the same convention as the verification.
"""

from __future__ import annotations

import json
import statistics
import time
from html import escape
from pathlib import Path

from controller.history import RunRecord, load_run
from controller.rewards import change_pct
from controller.svgplot import BEST, FLEET, NOISE, ORIGINAL, Panel, Scale, colour, fmt, padded

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;background:#f4f5f7}
main{max-width:1120px;margin:0 auto;padding:18px 28px 40px;background:#fff}
h1{font-size:22px;margin:6px 0 2px}
h2{font-size:17px;margin:26px 0 6px;border-bottom:1px solid #e3e6ea;padding-bottom:3px}
.meta{color:#5b6472}.verdict{font-size:18px;font-weight:600;padding:10px 14px;border-radius:6px;margin:12px 0}
.good{background:#e3f4ea;color:#145c36;border-left:5px solid #1a7f4b}
.none{background:#fff6dd;color:#6b4e00;border-left:5px solid #d9a400}
.bad{background:#fde7e7;color:#8a1c1c;border-left:5px solid #c62828}
table{border-collapse:collapse;margin:6px 0}
td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eef0f3;vertical-align:top}
th{font-weight:600;color:#3b4350}td.n{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:8px 18px}.note{color:#5b6472;font-size:13px;max-width:900px}
svg text{font-size:11px;fill:#3b4350}svg text.t{font-size:12.5px;font-weight:600;fill:#1d2330}
svg text.l{font-size:11.5px;fill:#5b6472}svg .g{stroke:#eceef1}svg .f{fill:none;stroke:#c3c8cf}
.key span{display:inline-block;margin-right:14px}
.key i{display:inline-block;width:11px;height:11px;border-radius:6px;margin-right:4px;vertical-align:-1px}
code,pre{font:12.5px ui-monospace,Menlo,Consolas,monospace;background:#f4f5f7;border-radius:3px}
pre{padding:8px;overflow-x:auto;max-height:340px}details{margin:6px 0}summary{cursor:pointer;color:#2f5d9a}
"""


def write_report(run_dir: str | Path) -> Path:
    """Render the run folder's report.html (written whole, then renamed into place)."""
    record = load_run(run_dir)
    path = Path(run_dir) / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(render(record), encoding="utf-8")
    tmp.replace(path)
    return path


def render(run: RunRecord) -> str:
    r = run.as_dict()
    spec = run.spec
    title = spec.get("workload_name") or "tuning run"
    body = [f"<h1>{escape(title)}</h1>", _meta(run), _verdict(r), _hosts_table(run)]
    sections = [
        ("What to keep", _configuration(run)),
        ("Original against best, measured in turn on each host", _ab(run)),
        ("Expert profiles, measured in the same verification", _arms(run)),
        ("Bounds and the other metrics", _constraints(run)),
        ("The search: best so far", _best_so_far(run)),
        ("Each knob against the result", _knobs(run)),
        ("Which knobs mattered", _importance(run)),
        ("What the hosts did while the benchmark ran", _metrics(run)),
        ("The plan", _plan(run)),
        ("The hosts", _facts(run)),
    ]
    body += [f"<section><h2>{escape(h)}</h2>{content}</section>" for h, content in sections if content]
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>tunefleet: {escape(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")


# -- what the run found ---------------------------------------------------------------------------

def _goal(run: RunRecord) -> str:
    return run.as_dict().get("goal") or run.spec.get("reward_goal") or "maximize"


def _metric(run: RunRecord) -> str:
    return run.as_dict().get("reward_metric") or run.spec.get("reward_metric") or "reward"


def _baselines(run: RunRecord) -> dict[str, float]:
    """Each host's baseline median: from the result, else from its baseline trials. A host whose
    baseline is not positive has no percentages to chart (change_pct is undefined) and is left out."""
    out = {}
    for name, h in (run.as_dict().get("hosts") or {}).items():
        median = ((h or {}).get("baseline") or {}).get("median")
        if isinstance(median, (int, float)) and median > 0:
            out[name] = median
    for host in {t.get("host") for t in run.trials} - set(out):
        raws = [t["raw"] for t in _trials(run, "baseline", host)]
        if raws and statistics.median(raws) > 0:
            out[host] = statistics.median(raws)
    return out


def _trials(run: RunRecord, phase: str, host: str | None = None) -> list[dict]:
    return [t for t in run.trials if t.get("phase") == phase and (host is None or t.get("host") == host)
            and not t.get("error") and isinstance(t.get("raw"), (int, float))]


def _meta(run: RunRecord) -> str:
    r = run.as_dict()
    bits = [time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started))]
    if r.get("strategy"):
        bits.append(f"strategy {escape(str(r['strategy']))}, seed {r.get('seed', '?')}")
    if r.get("evaluations") is not None:
        bits.append(f"{r['evaluations']} search evaluations of {r.get('budget', '?')} budgeted"
                    + (f", {r['evaluations_total']} benchmarks in all" if r.get("evaluations_total") else ""))
    bits.append(f"reward: {escape(_metric(run))} ({'lower' if _goal(run) == 'minimize' else 'higher'} is better)")
    return f"<p class=\"meta\">{' · '.join(bits)}<br>run folder <code>{escape(str(run.path))}</code></p>"


def _verdict(r: dict) -> str:
    if not r:
        return '<div class="verdict bad">No result: the run was interrupted or failed before verification.</div>'
    v = r.get("verification") or {}
    kind = "good" if r.get("success") else ("bad" if v.get("significant") and v.get("change_pct", 0) < 0 else "none")
    text = escape(str(r.get("verdict") or ""))
    explain = {
        "good": "The best configuration was measured against the original values in turn on every host, and the "
                "difference is larger than the noise: worth keeping.",
        "none": "The difference between the best configuration and the original values could be noise, or the "
                "best configuration breaks a bound the spec sets: nothing here is worth changing on the hosts.",
        "bad": "The best candidate of the search measured worse than the original values: keep the originals.",
    }[kind]
    return f'<div class="verdict {kind}">{text}</div><p class="note">{explain}</p>'


def _hosts_table(run: RunRecord) -> str:
    hosts = run.as_dict().get("hosts") or {}
    if not hosts:
        return ""
    rows = []
    for name, h in hosts.items():
        h = h or {}
        b, v = h.get("baseline") or {}, h.get("verification") or {}
        dropped = "".join(f" ({what}: {escape(str(h[what]))})" for what in ("dropped", "rejoined") if h.get(what))
        cells = [_num(b.get("median")), _num(b.get("cv"), "{:.1%}"), _num(v.get("change_pct"), "{:+.1f}%"),
                 _ci(v), _num(v.get("p_value"), "{:.3g}")]
        rows.append(f"<tr><td>{escape(name)}{dropped}</td>" + "".join(f"<td class=n>{c}</td>" for c in cells) + "</tr>")
    return ("<table><tr><th>host</th><th>baseline median</th><th>noise (cv)</th><th>verified change</th>"
            "<th>95% CI</th><th>p</th></tr>" + "".join(rows) + "</table>")


def _num(v, pattern: str | None = None) -> str:
    if not isinstance(v, (int, float)):
        return "-"
    return pattern.format(v) if pattern else fmt(v)


def _ci(v: dict) -> str:
    lo, hi = v.get("ci_low_pct"), v.get("ci_high_pct")
    return f"{lo:+.1f}% .. {hi:+.1f}%" if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) else "-"


def _change(v: dict | None) -> str:
    if not v or not isinstance(v.get("change_pct"), (int, float)):
        return "-"
    return f"{v['change_pct']:+.1f}%<br><span class=note>{_ci(v)}</span>"


def _range(knob: dict) -> str:
    if knob.get("values"):
        return " | ".join(map(str, knob["values"]))
    text = [" ".join(map(str, b)) if isinstance(b, list) else str(b) for b in (knob.get("min"), knob.get("max"))]
    return f"{text[0]} .. {text[1]}"


def _configuration(run: RunRecord) -> str:
    r = run.as_dict()
    best = r.get("best_config") or {}
    knobs = run.spec.get("action_space") or []
    if not knobs:
        return ""
    originals = {n: (h or {}).get("originals") or {} for n, h in run.hosts.items()}
    rows = []
    for k in knobs:
        name = k.get("param", "?")
        seen = sorted({str(o.get(name)) for o in originals.values() if o.get(name) is not None})
        original = seen[0] if len(seen) == 1 else "; ".join(f"{h}: {o.get(name)}" for h, o in originals.items())
        new = best.get(name)
        changed = new is not None and [str(new)] != seen
        rows.append(f"<tr><td><code>{escape(name)}</code></td><td>{escape(_range(k))}</td>"
                    f"<td>{escape(original or '-')}</td>"
                    f"<td>{'<b>' if changed and r.get('success') else ''}{escape(str(new) if new is not None else '-')}"
                    f"{'</b>' if changed and r.get('success') else ''}</td></tr>")
    advice = ("Take it home with <code>tunefleet export RUN --format sysctl.d|tuned|ansible|shell</code>."
              if r.get("success") else
              "The best configuration was not verified as better: the hosts were left on their original values, "
              "and <code>tunefleet export</code> refuses it unless forced.")
    return ("<table><tr><th>knob</th><th>searched</th><th>original</th><th>best configuration</th></tr>"
            + "".join(rows) + f"</table><p class=note>{advice}</p>")


def _key(*items: tuple[str, str]) -> str:
    return "<p class=\"key note\">" + "".join(f"<span><i style=\"background:{c}\"></i>{escape(t)}</span>"
                                            for t, c in items) + "</p>"


def _value_scale(values: list[float], a: float = 0, b: float = 1) -> Scale:
    positive = [v for v in values if v > 0]
    log = len(positive) == len(values) and positive and max(positive) / min(positive) > 20
    lo, hi = padded(values, log=bool(log))
    return Scale(lo, hi, a, b, "log" if log else "linear")


def _ab(run: RunRecord) -> str:
    verify = _trials(run, "verify")
    order = list(_baselines(run))
    hosts = sorted({t["host"] for t in verify}, key=lambda h: (order.index(h) if h in order else len(order), h))
    if not hosts:
        return "<p class=note>No host completed the verification.</p>"
    panel = Panel(Scale(0, 1, 0, 1, "category", hosts),
                  _value_scale([t["raw"] for t in verify]), width=max(380, 170 * len(hosts) + 80), height=270,
                  ylabel=_metric(run), title=f"{_metric(run)} per benchmark run"
                  f" ({'lower' if _goal(run) == 'minimize' else 'higher'} is better)")
    for h in hosts:
        for label, fill, off in (("A", ORIGINAL, -24), ("B", BEST, 24)):
            panel.box(h, [t["raw"] for t in verify if t["host"] == h and t.get("label") == label], fill, offset=off)
    return (panel.svg() + _key(("original values (A)", ORIGINAL), ("best configuration (B)", BEST))
            + "<p class=note>Each host ran the benchmark with its original values and with the best configuration "
              "in turn (A B A B ...), so a drift over time hits both alike. Boxes span the middle half of the "
              "runs, the bar is the median, every run is a dot.</p>")


def _arms(run: RunRecord) -> str:
    """Each compared profile: what it set here, against the original and against the winner."""
    arms = run.as_dict().get("arms") or {}
    if not arms:
        return ""
    rows = []
    for name, a in arms.items():
        values = a.get("values") or {}
        shown = "<br>".join(f"<code>{escape(k)} = {escape(str(v))}</code>" for k, v in values.items()
                            if isinstance(v, str)) or "(per host: see result.json)"
        left = "".join(f"<li><code>{escape(k)}</code>: {escape(why)}</li>"
                       for k, why in (a.get("left_out") or {}).items())
        other = ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in (a.get("not_sysctl") or {}).items())
        best_vs = a.get("best_vs") or {}
        word = ("tie" if not best_vs.get("significant") else
                "tunefleet better" if best_vs.get("change_pct", 0) > 0 else "profile better") if best_vs else "-"
        notes = (f"<details><summary>left out here</summary><ul>{left}</ul></details>" if left else "") + \
                (f"<details><summary>not sysctls, not applied</summary>{other}</details>" if other else "")
        rows.append(f"<tr><td>{escape(name)}<br><span class=note>{escape(a.get('source') or '')}</span>{notes}</td>"
                    f"<td>{shown}</td><td class=n>{_change(a.get('verification'))}</td>"
                    f"<td class=n>{_change(best_vs)}</td><td>{word}</td></tr>")
    return ("<table><tr><th>profile</th><th>applied here</th><th>vs original (95% CI)</th>"
            "<th>tunefleet vs it (95% CI)</th><th></th></tr>" + "".join(rows) + "</table>"
            "<p class=note>Each profile ran by turns with the original values and the best configuration on every "
            "host. A tie means the interval holds zero: the two could not be told apart.</p>")


def _constraints(run: RunRecord) -> str:
    """Every bound on every arm, the other metrics' medians, and the search's trade-off chart."""
    r = run.as_dict()
    bounds, observed = r.get("constraints") or [], r.get("observed") or {}
    if not bounds and not observed:
        return ""
    parts = []
    for c in bounds:
        limit = f"&le; {c['max']:g}" if "max" in c else f"&ge; {c['min']:g}"
        rows = "".join(f"<tr><td>{escape(arm)}</td><td class=n>{_num(b['median'])}</td>"
                       f"<td class=n>{_num(b['ci_low'])} .. {_num(b['ci_high'])}</td>"
                       f"<td>{ {True: 'holds', False: 'broken', None: 'not shown either way'}[b['holds']] }</td></tr>"
                       for arm, b in c["arms"].items())
        parts.append(f"<p><b>{escape(c['metric'])} {limit}</b></p><table><tr><th>arm</th><th>median</th>"
                     f"<th>95% CI</th><th></th></tr>{rows}</table>" + _tradeoff(run, c))
    metrics = sorted({m for v in observed.values() for m in v})
    if metrics:
        head = "".join(f"<th>{escape(m)}</th>" for m in metrics)
        rows = "".join(f"<tr><td>{escape(arm)}</td>" + "".join(f"<td class=n>{_num(v.get(m))}</td>" for m in metrics)
                       + "</tr>" for arm, v in observed.items())
        parts.append(f"<p>Medians over the verification's runs of each arm:</p><table><tr><th>arm</th>{head}</tr>"
                     f"{rows}</table>")
    return "".join(parts)


def _tradeoff(run: RunRecord, c: dict) -> str:
    """The search's runs: the bounded metric across, the objective up, the bound as a line."""
    base = _baselines(run)
    points = [(t["observed"][c["metric"]], _pct(t["raw"], base[t["host"]], _goal(run)))
              for t in _trials(run, "search") if c["metric"] in (t.get("observed") or {}) and t["host"] in base]
    if len(points) < 2:
        return ""
    xs, ys = [x for x, _ in points] + [c.get("max", c.get("min"))], [y for _, y in points]
    panel = Panel(_value_scale(xs), _value_scale(_clamped(ys)), width=520, height=260, xlabel=c["metric"],
                  ylabel="% better than baseline", title=f"the search: objective against {c['metric']}")
    limit = c["max"] if "max" in c else c["min"]  # a constraint in result.json has one of them
    x = panel.x(limit)
    panel.marks.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{panel.y1}" y2="{panel.y0}" stroke="#c62828" '
                       f'stroke-dasharray="4 3"><title>the bound: {fmt(limit)}</title></line>')
    panel.dots([(x_, max(y_, -200.0)) for x_, y_ in points], FLEET,
               labels=[f"{c['metric']} {fmt(x_)}: {y_:+.1f}%" for x_, y_ in points])
    return panel.svg() + "<p class=note>Every search run; the dashed line is the bound. A run past it scored below " \
                         "the original for the search, however good its objective.</p>"


def _pct(raw: float, baseline: float, goal: str) -> float:
    """change_pct against a baseline _baselines kept: a positive one, so never None."""
    pct = change_pct(raw, baseline, goal)
    assert pct is not None, baseline
    return pct


def _clamped(values: list[float]) -> list[float]:
    """A failure can be 1000x worse: keep the axis on the range where the choice is made."""
    return [max(v, -200.0) for v in values]


def _best_so_far(run: RunRecord) -> str:
    goal, base = _goal(run), _baselines(run)
    search = sorted((t for t in run.trials if t.get("phase") == "search"), key=lambda t: t.get("index", 0))
    if not search or not base:
        return ""
    hosts = list(base)
    curves: dict[str, list[tuple[int, float]]] = {h: [] for h in hosts}
    dots: dict[str, list[tuple[int, float]]] = {h: [] for h in hosts}
    fleet: list[tuple[int, float]] = []
    best: float | None = None
    host_best: dict[str, float] = {}
    for i, t in enumerate(search, 1):
        h = t.get("host")
        if t.get("error") or not isinstance(t.get("raw"), (int, float)) or h not in base:
            continue
        pct = _pct(t["raw"], base[h], goal)
        dots[h].append((i, pct))
        host_best[h] = max(host_best.get(h, pct), pct)
        curves[h].append((i, host_best[h]))
        best = pct if best is None else max(best, pct)
        fleet.append((i, best))
    band = []
    for h in hosts:
        raws = [t["raw"] for t in _trials(run, "baseline", h)]
        if raws:
            band += [_pct(min(raws), base[h], goal), _pct(max(raws), base[h], goal)]
    ys = _clamped([p for d in dots.values() for _, p in d] + band + [0.0])
    panel = Panel(Scale(0.5, len(search) + 0.5, 0, 1, integer=True), padded(ys), width=760, height=300,
                  xlabel="search evaluation (across the fleet, in order)", ylabel="% better than baseline",
                  title="best result so far, per host and for the fleet")
    if band:
        panel.band(min(band), max(band), NOISE, "range of the baseline runs: noise")
    panel.hline(0.0)
    for i, h in enumerate(hosts):
        panel.dots(dots[h], colour(i), r=2.4, labels=[f"{h}: {p:+.1f}%" for _, p in dots[h]], hollow=True)
        panel.line(curves[h] + ([(len(search), curves[h][-1][1])] if curves[h] else []), colour(i), step=True, label=h)
    panel.line(fleet + ([(len(search), fleet[-1][1])] if fleet else []), FLEET, width=2.6, step=True, label="fleet")
    return (panel.svg() + _key(*[(h, colour(i)) for i, h in enumerate(hosts)], ("fleet", FLEET),
                               ("baseline noise", NOISE))
            + "<p class=note>Circles are single evaluations; lines hold the best seen so far. Points inside the grey "
              "band are within the spread of the host's own baseline runs. A single good sample is not a result: "
              "the top candidates were re-measured and the best verified above.</p>")


def _numbers(text) -> list[int] | None:
    try:
        return [int(w) for w in str(text).split()]
    except ValueError:
        return None


def _knobs(run: RunRecord) -> str:
    goal, base = _goal(run), _baselines(run)
    trials = [t for t in _trials(run, "search") if t.get("host") in base]
    if not trials:
        return ""
    hosts = list(base)
    best = run.as_dict().get("best_config") or {}
    originals = [((h or {}).get("originals") or {}) for h in run.hosts.values()]
    panels = []
    for k in run.spec.get("action_space") or []:
        name = k.get("param")
        values = [(t["values"].get(name), t) for t in trials if (t.get("values") or {}).get(name) is not None]
        if not values:
            continue
        dims: list[tuple[str, int | None]]
        if k.get("values"):
            dims = [(name, None)]
        else:
            lo, hi = _numbers(" ".join(map(str, k["min"])) if isinstance(k.get("min"), list) else k.get("min")), \
                _numbers(" ".join(map(str, k["max"])) if isinstance(k.get("max"), list) else k.get("max"))
            free = [i for i, (a, b) in enumerate(zip(lo or [], hi or [])) if a != b]
            dims = [(name if len(lo or []) == 1 else f"{name}[{i}]", i) for i in free]
        for label, i in dims:
            panels.append(_knob_panel(k, label, i, values, hosts, base, goal, best.get(name), originals))
    return ('<div class="charts">' + "".join(p for p in panels if p) + "</div>"
            + _key(*[(h, colour(i)) for i, h in enumerate(hosts)])
            + "<p class=note>Every search evaluation, by the value the knob had; the ring marks the best "
              "configuration, the dashed line the original value. A trend here is a hint, not a proof: the other "
              "knobs moved at the same time.</p>")


def _knob_panel(k, label, i, values, hosts, base, goal, best_value, originals) -> str:
    def x_of(text):
        if i is None:
            return str(text)
        nums = _numbers(text)
        return nums[i] if nums and len(nums) > i else None

    pts = [(x_of(v), _pct(t["raw"], base[t["host"]], goal), t["host"]) for v, t in values]
    pts = [p for p in pts if p[0] is not None]
    if not pts:
        return ""
    ys = _clamped([p[1] for p in pts] + [0.0])
    if i is None:
        cats = list(dict.fromkeys(str(c) for c in (k.get("values") or []))) or sorted({p[0] for p in pts})
        x = Scale(0, 1, 0, 1, "category", cats + [p[0] for p in pts if p[0] not in cats])
    else:
        xs = [p[0] for p in pts]
        log = k.get("scale") == "log" and min(xs) > 0
        x = Scale(*padded(xs, log=log), 0, 1, "log" if log else "linear")
    panel = Panel(x, padded(ys), width=360, height=220, title=label, ylabel="% better", left=52)
    panel.hline(0.0)
    for orig in {o.get(k.get("param")) for o in originals} - {None}:
        ox = x_of(orig)
        if ox is not None and (i is None and ox in x.categories or i is not None and x.lo <= ox <= x.hi):
            xp = x(ox)
            panel.marks.append(f'<line x1="{xp:.1f}" x2="{xp:.1f}" y1="{panel.y1}" y2="{panel.y0}" stroke="#555" '
                               f'stroke-dasharray="3 3"><title>original {escape(str(orig))}</title></line>')
    for j, h in enumerate(hosts):
        mine = [(a, b) for a, b, host in pts if host == h]
        panel.dots(mine, colour(j), labels=[f"{h}: {a} -> {b:+.1f}%" for a, b in mine])
    bx = x_of(best_value) if best_value is not None else None
    if bx is not None:
        at_best = [(a, b) for a, b, _ in pts if a == bx]
        panel.dots(at_best[:1] or [], BEST, r=7, hollow=True, labels=[f"best: {best_value}"])
    return panel.svg()


def _importance(run: RunRecord) -> str:
    """Absolute shares of the search's variance, so two knobs at 5% read as weak, not as 50/50."""
    names = [k.get("param") for k in run.spec.get("action_space") or []]
    search = [t for t in run.trials
              if t.get("phase") == "search" and not (t.get("error") or "").startswith("agent lost")]
    if not names or not search:
        return ""
    from controller.learn.importance import knob_scores  # here: numpy and scipy, for a run with a search

    scores = knob_scores(search, names)
    if not scores or max(scores.values()) <= 0:
        return ("<p class=note>No knob explained more of the variation in the search's results than chance would "
                f"({len(search)} evaluations). That means not enough evidence, not that nothing matters.</p>")
    rows = "".join(
        f"<tr><td><code>{escape(n)}</code></td><td style=\"width:420px\"><div style=\"background:#2f6db5;height:12px;"
        f"width:{max(0.3, s * 100):.1f}%\"></div></td><td class=n>{s * 100:.0f}%</td></tr>"
        for n, s in sorted(scores.items(), key=lambda kv: -kv[1]))
    rest = max(0.0, 1 - sum(scores.values()))
    return ("<table>" + rows + f"</table><p class=note>Share of the variation in the search's {len(search)} results "
            f"that each knob explains on its own (absolute, not scaled to add up to 100%). {rest * 100:.0f}% is left "
            "to noise and to what the knobs did together.</p>")


def _metrics(run: RunRecord) -> str:
    """The baseline runs and the best configuration's runs, side by side, metric by metric. Trials
    keep each run's summary of the agent's per-second samples (rates over the run, gauges averaged),
    so that is what is drawn: one dot per run."""
    original = _trials(run, "baseline") + [t for t in _trials(run, "verify") if t.get("label") == "A"]
    best = [t for t in _trials(run, "verify") if t.get("label") == "B"]
    if not original or not best:
        return ""
    wanted = [m.get("metric") for m in run.spec.get("state_space") or [] if isinstance(m, dict)]
    present = {k for t in original + best for k, v in (t.get("metrics") or {}).items() if isinstance(v, (int, float))}
    names = [m for m in wanted if isinstance(m, str) and m in present] + sorted(present - set(wanted))
    panels: list[str] = []
    for m in names:
        if len(panels) == 9:
            break
        panel = _summary_panel(m, original, best)
        if panel:
            panels.append(panel)
    if not panels:
        return ""
    return ('<div class="charts">' + "".join(panels) + "</div>"
            + _key(("original values (baseline and A runs)", ORIGINAL), ("best configuration (B runs)", BEST))
            + "<p class=note>Each dot is one benchmark run's figure for the whole run (rates per second, gauges "
              "averaged over the agent's per-second samples). Metrics the spec watches come first; metrics that did "
              "not vary are left out.</p>")


def _summary_panel(metric: str, original: list[dict], best: list[dict]) -> str:
    def vals(ts):
        return [t["metrics"][metric] for t in ts if isinstance((t.get("metrics") or {}).get(metric), (int, float))]

    a, b = vals(original), vals(best)
    if not a or not b or max(a + b) == min(a + b):
        return ""
    panel = Panel(Scale(0, 1, 0, 1, "category", ["original", "best"]), padded(a + b), width=240, height=200,
                  title=metric)
    panel.box("original", a, ORIGINAL)
    panel.box("best", b, BEST)
    return panel.svg()


def _plan(run: RunRecord) -> str:
    plan, spec = run.plan, run.spec
    rows = [("benchmark", f"<code>{escape(str(spec.get('benchmark_command', '')))}</code>"),
            ("reward", escape(f"{spec.get('reward_metric')} ({spec.get('reward_goal', 'maximize')})"))]
    if spec.get("description"):
        rows.append(("workload", escape(str(spec["description"]))))
    if plan.get("reason"):
        rows.append(("why this plan", escape(f"{plan.get('strategist', '')}: {plan['reason']}".lstrip(": "))))
    rationale = plan.get("rationale") or {}
    for k in spec.get("action_space") or []:
        why = rationale.get(k.get("param")) or k.get("rationale")
        if why:
            rows.append((f"<code>{escape(k['param'])}</code>", escape(str(why))))
    for w in list(plan.get("warnings") or []) + list(run.as_dict().get("warnings") or []):
        rows.append(("warning", escape(str(w))))
    table = "<table>" + "".join(f"<tr><th>{a}</th><td>{b}</td></tr>" for a, b in rows) + "</table>"
    return (table + "<details><summary>the spec that ran (spec.json)</summary><pre>"
            + escape(json.dumps(spec, indent=2)) + "</pre></details>")


def _facts(run: RunRecord) -> str:
    if not run.hosts:
        return ""
    rows = []
    for name, h in run.hosts.items():
        f = (h or {}).get("facts") or {}
        distro = f.get("distro") or {}
        tools = ", ".join(sorted(k for k, v in (f.get("tools") or {}).items() if v)) or "-"
        services = ", ".join(sorted(k for k, v in (f.get("services") or {}).items() if v)) or "-"
        if isinstance(distro, dict):
            distro = f"{distro.get('name', '')} {distro.get('version', '')}".strip()
        cells = [name, f.get("hostname"), f.get("kernel"), distro,
                 f.get("cpus"), f"{(f.get('mem_total_kb') or 0) // 1024} MB" if f.get("mem_total_kb") else None,
                 f.get("python"), services, tools]
        rows.append("<tr>" + "".join(f"<td>{escape(str(c)) if c not in (None, '') else '-'}</td>" for c in cells)
                    + "</tr>")
    return ("<table><tr><th>host</th><th>hostname</th><th>kernel</th><th>distribution</th><th>cpus</th><th>memory</th>"
            "<th>python</th><th>services</th><th>tools</th></tr>" + "".join(rows) + "</table>")
