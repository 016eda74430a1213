"""Endpoint configuration (env, --model, config file, redaction), the built-in fallback, and the
chat conversation against the scripted chat-completions server (no hosts: the fleet is a stub)."""

from __future__ import annotations

import pytest

from controller.errors import UserError
from controller.strategist import choose
from controller.strategist.chat import ChatIO, chat
from controller.strategist.config import NO_KEY, LLMConfig, redact, resolve
from tests.fake_llm import FakeLLM, optimize, reply, text
from tests.unit.test_llm_strategist import GOOD, KEY, host_facts, made_up_knob

# --- configuration ------------------------------------------------------------------------------


@pytest.fixture()
def env(tmp_path):
    return {"XDG_CONFIG_HOME": str(tmp_path)}  # no ~/.config/tunefleet/config.yml of the tester


def write_config(tmp_path, body: str):
    path = tmp_path / "tunefleet" / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def test_no_endpoint_means_no_model(env):
    assert resolve(None, env) is None


def test_openai_key_alone_uses_openai_with_a_default_model(env):
    cfg = resolve(None, {**env, "OPENAI_API_KEY": KEY})
    assert cfg.base_url is None and cfg.endpoint == "https://api.openai.com/v1"
    assert cfg.model == "gpt-4o-mini" and cfg.api_key == KEY


def test_a_base_url_alone_needs_no_key_and_asks_the_endpoint_for_its_model(env):
    cfg = resolve(None, {**env, "OPENAI_BASE_URL": "http://localhost:11434/v1/"})
    assert cfg.base_url == "http://localhost:11434/v1" and cfg.api_key == NO_KEY and cfg.model is None


def test_model_option_beats_env_beats_file(env, tmp_path):
    write_config(tmp_path, "base_url: http://gpu:8000/v1\nmodel: from-file\napi_key: sk-file-0123456789\n"
                           "timeout: 30\nmax_retries: 1\nmax_turns: 4\n")
    cfg = resolve(None, env)
    assert (cfg.model, cfg.base_url, cfg.api_key, cfg.timeout, cfg.max_retries, cfg.max_turns) == \
        ("from-file", "http://gpu:8000/v1", "sk-file-0123456789", 30.0, 1, 4)
    assert cfg.source.startswith("config file")
    cfg = resolve(None, {**env, "TUNEFLEET_MODEL": "from-env", "OPENAI_BASE_URL": "http://other/v1",
                         "OPENAI_API_KEY": KEY})
    assert (cfg.model, cfg.base_url, cfg.api_key, cfg.source) == ("from-env", "http://other/v1", KEY, "environment")
    assert resolve("from-option", {**env, "TUNEFLEET_MODEL": "from-env"}).model == "from-option"


def test_the_key_may_come_from_another_variable(env, tmp_path):
    write_config(tmp_path, "base_url: https://azure.example/v1\napi_key_env: AZURE_KEY\nmodel: gpt\n")
    assert resolve(None, {**env, "AZURE_KEY": KEY}).api_key == KEY


def test_bad_config_files_are_one_clear_line(env, tmp_path):
    write_config(tmp_path, "base_url: http://x/v1\nmodle: typo\n")
    with pytest.raises(UserError, match="unknown setting.*modle"):
        resolve(None, env)
    write_config(tmp_path, f"api_key: {KEY}\n  bad: [\n")
    with pytest.raises(UserError) as err:
        resolve(None, env)
    assert "not valid YAML" in str(err.value) and KEY not in str(err.value)
    write_config(tmp_path, "base_url: http://x/v1\ntimeout: soon\n")
    with pytest.raises(UserError, match="timeout must be a number"):
        resolve(None, env)
    with pytest.raises(UserError, match="does not exist"):
        resolve(None, {**env, "TUNEFLEET_CONFIG": str(tmp_path / "nope.yml")})
    with pytest.raises(UserError, match="http"):
        resolve(None, {**env, "OPENAI_BASE_URL": "localhost:8000"})


def test_builtin_and_model_without_endpoint(env):
    assert resolve("builtin", {**env, "OPENAI_API_KEY": KEY}) is None
    with pytest.raises(UserError, match="no model endpoint is configured"):
        resolve("llama3", env)


def test_redaction():
    cfg = LLMConfig(model="m", base_url="https://user:hunter2pass@proxy.example/v1", api_key=KEY)
    assert KEY not in repr(cfg) and "hunter2pass" not in cfg.endpoint
    line = cfg.redact(f"failed with {KEY}, Authorization: Bearer abc.def and sk-proj-abcdefghijkl at hunter2pass")
    assert KEY not in line and "abc.def" not in line and "sk-proj-abcdefghijkl" not in line
    assert "hunter2pass" not in line
    assert redact("no secrets here") == "no secrets here"


def test_fallback_to_the_builtin_strategist_is_said(env):
    events = []
    plan = choose("optimize this system for a PostgreSQL database", None, env=env,
                  on_event=lambda kind, msg: events.append((kind, msg)))
    assert plan.strategist == "builtin" and plan.workload == "pg-oltp"
    assert events and events[0][0] == "fallback" and "no model endpoint configured" in events[0][1]


def test_choose_is_still_callable_the_old_way(monkeypatch, tmp_path):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TUNEFLEET_CONFIG", "TUNEFLEET_MODEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert choose("make new connections to my web servers faster", None).strategist == "builtin"


# --- chat ---------------------------------------------------------------------------------------

RESULT = {"success": True, "workload_name": GOOD["workload_name"], "verdict": "improvement of 12.0%",
          "improvement": 12.0, "best_config": {"net.core.somaxconn": "4096", "net.ipv4.tcp_fin_timeout": "10"},
          "baseline_reward": 5000.0, "best_reward": 5600.0, "reward_metric": "transactions_per_second",
          "goal": "maximize", "evaluations": 24,
          "verification": {"significant": True, "ci_low_pct": 8.0, "ci_high_pct": 16.0}}


class Terminal:
    """A user who types `lines` and answers the questions in `answers`, and a stub fleet."""

    def __init__(self, lines, answers):
        self.lines, self.answers = list(lines), list(answers)
        self.said, self.notes, self.plans, self.runs, self.kept, self.asked = [], [], [], [], [], []

    def io(self) -> ChatIO:
        return ChatIO(ask=lambda: self.lines.pop(0) if self.lines else None, say=self.said.append,
                      note=self.notes.append, show_plan=self.plans.append, confirm_run=self.answer,
                      confirm_keep=self.answer, run=self.run, show_result=lambda r: None, keep=self.kept.append)

    def answer(self, question: str) -> bool:
        self.asked.append(question)
        return self.answers.pop(0)

    def run(self, plan) -> dict:
        self.runs.append(plan)
        return RESULT


def converse(script, terminal, **kw):
    with FakeLLM(script) as fake:
        cfg = LLMConfig(model="fake-model", base_url=fake.url, api_key=KEY, max_retries=0, **kw)
        summary = chat(cfg, {"db1": host_facts("db1", "a")}, terminal.io(), hosts=1)
    return fake, summary


def test_chat_plans_asks_runs_presents_and_keeps():
    term = Terminal(["optimize this system for a PostgreSQL database"], [True, True])
    script = [reply(optimize(GOOD)), text("Performance improved by 12.0% (95% CI 8-16%). Best configuration: "
                                          "net.core.somaxconn = 4096. Keep it?")]
    fake, summary = converse(script, term)
    assert fake.count == 2
    assert len(term.plans) == 1
    assert term.plans[0].spec.knob_names == ["net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_fin_timeout"]
    assert term.asked[0].startswith("Run this benchmark") and term.asked[1].startswith("Keep the best")
    assert len(term.runs) == 1 and term.kept == [RESULT]
    assert "improved by 12.0%" in term.said[0]
    sent = fake.tool_results(1)[0]
    assert '"improvement": 12.0' in sent and '"significant": true' in sent
    assert summary.kept == RESULT and summary.usage["requests"] == 2


def test_chat_declined_plan_never_runs():
    term = Terminal(["tune for postgres", "quit"], [False])
    fake, summary = converse([reply(optimize(GOOD)), text("What would you like to change?")], term)
    assert fake.count == 2
    assert term.runs == [] and term.kept == []
    assert "declined" in fake.tool_results(1)[0]
    assert summary.runs == []


def test_chat_with_a_model_that_never_converges_runs_nothing_and_goes_on():
    term = Terminal(["tune for postgres", "never mind"], [])
    script = [reply(optimize(made_up_knob()))] * 3 + [text("Sorry about that.")]
    fake, _ = converse(script, term)
    assert fake.count == 4
    assert term.runs == [] and term.plans == []
    assert any("failed validation 3 times" in n for n in term.notes)
    assert term.said == ["Sorry about that."]
    # the conversation stays well formed: every tool call was answered before the next user message
    msgs = fake.messages(-1)
    calls = {c["id"] for m in msgs if m["role"] == "assistant" for c in m.get("tool_calls") or []}
    answered = {m["tool_call_id"] for m in msgs if m["role"] == "tool"}
    assert calls == answered


def test_chat_insignificant_result_asks_differently():
    term = Terminal(["tune for postgres"], [True, False])
    flat = dict(RESULT, success=False, verdict="no significant improvement: +1.0%")
    term.run = lambda plan: flat
    fake, summary = converse([reply(optimize(GOOD)), text("No significant improvement.")], term)
    assert fake.count == 2
    assert term.asked[1].startswith("The change was not significant")
    assert term.kept == [] and summary.kept is None
