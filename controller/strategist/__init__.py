"""Strategists turn a goal in plain words into a tuning spec: the built-in workload catalog
(offline), or an LLM over any OpenAI-compatible endpoint when one is configured."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from controller.strategist.config import BUILTIN, resolve


def choose(goal: str, facts: dict | None = None, *, model: str | None = None, catalog=None,
           on_event: Callable[[str, str], None] | None = None, config=None, env: Mapping[str, str] | None = None):
    """The plan for a goal: designed by the model when an endpoint is configured (see
    strategist.config), else by the built-in catalog, and `on_event("fallback", ...)` says so.

    facts: host name -> hello facts (tools, services, knobs), or None when planning without hosts.
    model: --model (`builtin` forces the built-in catalog). config: a resolved LLMConfig (tests).
    """
    cfg = config if config is not None else resolve(model, env)
    if cfg is None:
        from controller.strategist.builtin import plan  # here: the spec's pydantic and numpy

        if on_event:
            on_event("fallback", "planned with the built-in workload catalog (--model builtin)" if model == BUILTIN
                     else "no model endpoint configured (OPENAI_BASE_URL / OPENAI_API_KEY): planned with the "
                          "built-in workload catalog")
        return plan(goal, facts, catalog)
    from controller.strategist import llm  # here: the spec's pydantic and numpy, and the model client

    return llm.plan(goal, facts, config=cfg, catalog=catalog, on_event=on_event)
