"""The LLM strategist: a ReAct loop over the chat-completions API with function calling, the API
OpenAI, Azure OpenAI, vLLM, Ollama and llama.cpp servers all speak.

    goal + host summary -> model -> tool calls (inspect_hosts, list_tunables) answered with real
    data -> optimize_workload(config_json) -> validated like a hand-written spec -> accepted,
    or the problems go back to the model as the tool result and it tries again

Bounded twice: at most `max_turns` model requests per plan and `max_invalid` rejected specs.
`openai` is imported inside functions, so `tunefleet --help` never pays for it. Every error that
leaves this module is one line, and the API key is scrubbed from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.errors import TunefleetError, UserError
from controller.strategist import prompts
from controller.strategist.config import LLMConfig
from controller.strategist.toolbox import Toolbox

Event = Callable[[str, str], None]  # (kind, text): "request", "tool", "rejected", "accepted", "reply"


class ModelError(TunefleetError):
    """The model endpoint failed, or the model did not produce a valid spec."""


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def add(self, usage) -> None:
        self.requests += 1
        if usage is not None:
            self.prompt_tokens += getattr(usage, "prompt_tokens", 0) or 0
            self.completion_tokens += getattr(usage, "completion_tokens", 0) or 0
            self.total_tokens += getattr(usage, "total_tokens", 0) or 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def make_client(config: LLMConfig):
    try:
        import openai
    except ImportError:
        raise UserError("the LLM strategist needs the openai package (pip install 'openai>=1.30'), "
                        "or plan with --model builtin") from None

    return openai.OpenAI(api_key=config.api_key, base_url=config.base_url, timeout=config.timeout,
                         max_retries=config.max_retries)


def explain(e: Exception, config: LLMConfig) -> TunefleetError:
    """One line for the user, with the key scrubbed, from whatever the openai client raised."""
    import openai

    where = config.endpoint
    tries = f" (after {config.max_retries + 1} attempts)" if config.max_retries else ""
    if isinstance(e, openai.APITimeoutError):
        msg = f"the model endpoint at {where} did not answer within {config.timeout:g} s{tries}"
    elif isinstance(e, openai.APIConnectionError):
        msg = f"cannot reach the model endpoint at {where}: {_root_cause(e)}{tries}"
    elif isinstance(e, openai.APIStatusError):
        detail = _detail(e)
        code = e.status_code
        if code == 401:
            msg = f"the endpoint refused the API key (401): check OPENAI_API_KEY for {where}"
        elif code == 403:
            msg = f"the endpoint denied access (403){detail}"
        elif code == 404:
            msg = (f"the endpoint at {where} has no model {config.model!r} or no chat-completions API (404){detail}; "
                   "check --model / TUNEFLEET_MODEL and that OPENAI_BASE_URL ends in /v1")
        elif code == 429:
            msg = f"the endpoint is rate limiting or out of quota (429){tries}{detail}; try again later"
        elif code >= 500:
            msg = f"the model endpoint at {where} failed ({code}){tries}{detail}"
        elif code == 400:
            msg = f"the endpoint rejected the request (400){detail}; does {config.model} support tool calling?"
        else:
            msg = f"the model endpoint answered {code}{detail}"
    elif isinstance(e, openai.OpenAIError):
        msg = f"the model endpoint at {where} gave an unusable answer: {e}"
    else:
        msg = f"talking to the model endpoint at {where} failed: {type(e).__name__}: {e}"
    return ModelError(config.redact(msg))


def _root_cause(e: BaseException) -> str:
    """'connection refused', 'name or service not known': the innermost reason, lower case."""
    seen, cause = set(), e
    while id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        nxt = (cause.__cause__ or cause.__context__
               or next((a for a in cause.args if isinstance(a, BaseException)), None))
        if nxt is None:
            break
        cause = nxt
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(cause)).strip()
    return (text or type(cause).__name__).lower()


def _detail(e) -> str:
    body = getattr(e, "body", None)
    text = body.get("message") if isinstance(body, dict) else None
    text = " ".join(str(text or "").split())[:200]
    return f": {text}" if text else ""


@dataclass
class Step:
    """What one model request produced."""

    text: str | None = None           # what the model said (no tool call: it talks to the user)
    calls: int = 0                    # tool calls it made
    plan: object | None = None        # an accepted Plan from optimize_workload
    call_id: str | None = None        # the optimize_workload call that produced `plan`, still unanswered


@dataclass
class Session:
    """One conversation with the model: its messages, tools and token usage."""

    config: LLMConfig
    toolbox: Toolbox
    on_event: Event | None = None
    client: Any = None  # an OpenAI client (openai is imported only when a model is used)
    messages: list = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    served_model: str | None = None

    def __post_init__(self) -> None:
        self.client = self.client or make_client(self.config)
        self.model = self.config.model or self._served_model()
        system = prompts.system_prompt(self.toolbox.examples(), self.toolbox.catalog.benchmark_tools)
        self.messages.append({"role": "system", "content": system})

    def _served_model(self) -> str:
        try:
            models = [m.id for m in self.client.models.list()]
        except Exception as e:  # noqa: BLE001 - every failure becomes one clear line
            err = explain(e, self.config)
            raise ModelError(f"{err}; pass --model NAME or set TUNEFLEET_MODEL") from None
        if not models:
            raise UserError(f"{self.config.endpoint} serves no model: pass --model NAME or set TUNEFLEET_MODEL")
        return models[0]

    def event(self, kind: str, text: str) -> None:
        if self.on_event:
            self.on_event(kind, self.config.redact(text))

    def say(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    def answer(self, call_id: str, content: str) -> None:
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": content})

    def complete(self):
        self.event("request", f"asking {self.model} at {self.config.endpoint} (request {self.usage.requests + 1})")
        try:
            resp = self.client.chat.completions.create(model=self.model, messages=self.messages,
                                                       tools=prompts.TOOLS, tool_choice="auto")
        except Exception as e:  # noqa: BLE001
            raise explain(e, self.config) from None
        self.usage.add(getattr(resp, "usage", None))
        self.served_model = getattr(resp, "model", None) or self.served_model
        if not getattr(resp, "choices", None):
            raise ModelError(f"the model endpoint at {self.config.endpoint} answered without a choice")
        return resp.choices[0].message

    def step(self) -> Step:
        """One model request, and its tool calls answered with real data."""
        msg = self.complete()
        calls = [_normalize(c, i, self.usage.requests) for i, c in enumerate(msg.tool_calls or [])]
        entry = {"role": "assistant", "content": msg.content or ""}
        if calls:
            entry["tool_calls"] = [{"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                                   for cid, name, args in calls]
        self.messages.append(entry)
        if not calls:
            return Step(text=(msg.content or "").strip())
        out = Step(text=(msg.content or "").strip() or None, calls=len(calls))
        for cid, name, args in calls:
            if out.plan is not None:
                self.answer(cid, "skipped: a spec was already accepted in this turn")
                continue
            self.event("tool", f"the model calls {name}")
            result = self.toolbox.call(name, args)
            if result.plan is not None:
                out.plan, out.call_id = result.plan, cid
                self.event("accepted", "the spec passed validation")
                continue
            if result.problems:
                self.event("rejected", f"spec rejected ({len(result.problems)} problem(s)): "
                           + "; ".join(result.problems[:3]))
            self.answer(cid, result.content)
        return out

    def record(self) -> dict:
        """What the run folder keeps about the model: never the key."""
        return {"model": self.served_model or self.model, "requested_model": self.model,
                "endpoint": self.config.endpoint, "usage": self.usage.to_dict(),
                "rejected": list(self.toolbox.rejections)}


def _normalize(call, i: int, request: int) -> tuple[str, str, str]:
    """(id, name, arguments as JSON text): some servers omit ids or send arguments as an object."""
    fn = getattr(call, "function", None)
    args = getattr(fn, "arguments", None)
    if not isinstance(args, str):
        args = json.dumps(args if args is not None else {})
    return getattr(call, "id", None) or f"call_{request}_{i}", str(getattr(fn, "name", "") or ""), args


def plan(goal: str, facts: dict | None, *, config: LLMConfig, catalog=None, on_event: Event | None = None,
         client=None):
    """A validated Plan for the goal, designed by the model; ModelError when it cannot get one."""
    toolbox = Toolbox(goal, facts, catalog, config.max_invalid)
    session = Session(config, toolbox, on_event, client)
    session.say(prompts.task(goal, toolbox.host_summary()))
    for _ in range(config.max_turns):
        step = session.step()
        if step.plan is not None:
            assert step.call_id is not None  # set with the plan
            session.answer(step.call_id, "accepted")
            return finish(step.plan, session)
        if len(toolbox.rejections) >= config.max_invalid:
            raise ModelError(f"the model's spec failed validation {len(toolbox.rejections)} times "
                             f"(limit {config.max_invalid}); last problems: " + "; ".join(toolbox.rejections[-1]))
        if not step.calls:
            session.say(prompts.NUDGE)
    last = f"; last problems: {'; '.join(toolbox.rejections[-1])}" if toolbox.rejections else \
        "; it never called optimize_workload with a spec"
    raise ModelError(f"the model did not produce a valid spec within {config.max_turns} requests "
                     f"(limit max_turns){last}")


def finish(plan_obj, session: Session):
    """Stamp the plan with where it came from: strategist, model, token usage."""
    record = session.record()
    usage = record["usage"]
    reason = str(getattr(plan_obj, "reason", "")).replace("the model", record["model"], 1)
    reason += f"; {usage['requests']} request(s), {usage['total_tokens']} tokens"
    for name, value in (("strategist", "llm"), ("model", record["model"]), ("usage", usage),
                        ("llm", record), ("reason", reason)):
        try:
            setattr(plan_obj, name, value)
        except (AttributeError, TypeError):  # a frozen plan: the toolbox builds ours mutable
            pass
    return plan_obj

