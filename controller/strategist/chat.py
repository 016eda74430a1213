"""`tunefleet chat`: the conversation. The user talks; the model asks the hosts, designs an
experiment and submits it; the spec is validated, shown and confirmed by the user before it runs;
the measured result goes back to the model, which presents it; the user decides whether to keep it.

The terminal and the fleet are reached through `ChatIO`, so the conversation itself is tested with a
stand-in model and no hosts. Limits hold per user message: `max_turns` model requests and
`max_invalid` rejected specs, after which the user hears why and may rephrase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.errors import TunefleetError
from controller.strategist import prompts
from controller.strategist.config import LLMConfig
from controller.strategist.llm import Event, Session, finish
from controller.strategist.toolbox import Toolbox

if TYPE_CHECKING:
    from controller.strategist.builtin import Plan

QUIT = {"quit", "exit", "bye", "q", ":q"}


@dataclass
class ChatIO:
    ask: Callable[[], str | None]            # the user's next message; None at end of input
    say: Callable[[str], None]               # the model's words
    note: Callable[[str], None]              # tunefleet's own remarks
    show_plan: Callable[[Plan], None]
    confirm_run: Callable[[str], bool]
    confirm_keep: Callable[[str], bool]
    run: Callable[[Plan], dict]              # run a validated plan on the hosts -> result
    show_result: Callable[[dict], None]
    keep: Callable[[dict], None]             # leave the result's best configuration applied


@dataclass
class ChatSummary:
    runs: list[dict]
    kept: dict | None
    usage: dict


def chat(config: LLMConfig, facts: dict | None, io: ChatIO, *, catalog=None, hosts: int = 0,
         on_event: Event | None = None, client=None) -> ChatSummary:
    toolbox = Toolbox("", facts, catalog, config.max_invalid)
    session = Session(config, toolbox, on_event, client)
    session.messages[0]["content"] += "\n\n" + prompts.chat_system_addendum(toolbox.host_summary())
    runs: list[dict] = []
    while True:
        text = io.ask()
        if text is None or text.strip().lower() in QUIT:
            break
        if not text.strip():
            continue
        toolbox.goal = text.strip()
        session.say(text.strip())
        kept = _turn(session, toolbox, io, config, runs, hosts)
        if kept is not None:
            io.note("kept the best configuration on the hosts (not persisted across reboots); "
                    "`tunefleet restore` brings the originals back. Ending the conversation.")
            return ChatSummary(runs, kept, session.usage.to_dict())
    return ChatSummary(runs, None, session.usage.to_dict())


def _turn(session: Session, toolbox: Toolbox, io: ChatIO, config: LLMConfig, runs: list, hosts: int):
    """Model requests until it answers the user in words; returns the result the user kept, if any."""
    rejected_before = len(toolbox.rejections)
    finished = None
    try:
        for _ in range(config.max_turns):
            step = session.step()
            if step.plan is not None:
                finished = _offer(session, step, io, runs, hosts) or finished
                continue
            if len(toolbox.rejections) - rejected_before >= config.max_invalid:
                io.note(f"the model's spec failed validation {config.max_invalid} times; last problems: "
                        + "; ".join(toolbox.rejections[-1]) + ". Nothing ran. Rephrase, or try another model.")
                return _close_calls(session)
            if not step.calls:
                if step.text:
                    io.say(step.text)
                break
        else:
            io.note(f"the model did not answer within {config.max_turns} requests; nothing else ran")
            return _close_calls(session)
    except TunefleetError as e:
        io.note(f"error: {e}")
        return _close_calls(session)
    if finished is not None and finished.get("best_config"):
        prompt = ("Keep the best configuration on the hosts?" if finished.get("success") else
                  "The change was not significant. Keep the best configuration on the hosts anyway?")
        if io.confirm_keep(prompt):
            io.keep(finished)
            return finished
        session.say("(I did not keep it: the hosts are back on their original values.)")
    return None


def _offer(session: Session, step, io: ChatIO, runs: list, hosts: int) -> dict | None:
    """Show a validated plan, ask, run it, hand the measured result back to the model."""
    plan = finish(step.plan, session)
    io.show_plan(plan)
    where = f" on {hosts} host(s)" if hosts else ""
    if not io.confirm_run(f"Run this benchmark and change these knobs{where}?"):
        session.answer(step.call_id, prompts.declined())
        return None
    try:
        result = io.run(plan)
    except TunefleetError as e:
        io.note(f"the run failed: {e}")
        session.answer(step.call_id, f"The run failed: {e}. Nothing is left changed on the hosts.")
        return None
    runs.append(result)
    io.show_result(result)
    session.answer(step.call_id, prompts.results(result))
    return result


def _close_calls(session: Session) -> None:
    """Answer tool calls left open by an interrupted turn, so the conversation stays well formed."""
    answered = {m.get("tool_call_id") for m in session.messages if m.get("role") == "tool"}
    for msg in reversed(session.messages):
        if msg.get("role") == "assistant":
            for c in msg.get("tool_calls") or []:
                if c["id"] not in answered:
                    session.answer(c["id"], "stopped: this turn ended")
            break
    return None
