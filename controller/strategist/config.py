"""Where the model lives: endpoint, API key and model name, resolved the usual way.

    --model              beats   TUNEFLEET_MODEL        beats   `model:` in the config file
    OPENAI_BASE_URL      beats   `base_url:` in the config file   (unset: OpenAI's own endpoint)
    OPENAI_API_KEY       beats   `api_key:` / `api_key_env:` in the config file

The config file is $TUNEFLEET_CONFIG, else ~/.config/tunefleet/config.yml (XDG_CONFIG_HOME is
honoured); a missing default file is fine, a missing $TUNEFLEET_CONFIG is an error. With neither
a base URL nor a key anywhere there is no endpoint: the built-in strategist plans instead.
Without a model name, OpenAI's endpoint gets gpt-4o-mini and any other endpoint is asked which
model it serves (GET /models, the first one).
`--model builtin` forces the built-in strategist even when an endpoint is configured.

The API key is never printed: `redact()` scrubs it (and anything shaped like a key or a
bearer token) from every message that leaves this package.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from controller.errors import UserError

DEFAULT_MODEL = "gpt-4o-mini"
OPENAI_URL = "https://api.openai.com/v1"
NO_KEY = "not-needed"  # local servers (vLLM, Ollama, llama.cpp) ignore the key, the client wants one
BUILTIN = "builtin"
FILE_KEYS = {"base_url", "api_key", "api_key_env", "model", "timeout", "max_retries", "max_turns", "max_invalid"}

_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{6,})|(Bearer\s+)[^\s'\"]+", re.IGNORECASE)


@dataclass(frozen=True)
class LLMConfig:
    model: str | None                    # None: ask the endpoint (GET /models) and take what it serves
    base_url: str | None = None          # None: the openai package's default (api.openai.com)
    api_key: str = field(default=NO_KEY, repr=False)
    timeout: float = 120.0               # seconds per request; local models can be slow
    max_retries: int = 2                 # the client's own retries, with back-off: 408/409/429/5xx, connect errors
    max_turns: int = 8                   # model requests per plan
    max_invalid: int = 3                 # rejected optimize_workload calls before giving up
    source: str = "environment"

    @property
    def endpoint(self) -> str:
        """The base URL as it may be shown: without user:password@."""
        return strip_userinfo(self.base_url or OPENAI_URL)

    def redact(self, text: str) -> str:
        return redact(text, self.api_key, self.base_url)

    def describe(self) -> str:
        return f"{self.model or 'the served model'} at {self.endpoint}"


def strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def redact(text: str, key: str | None = None, base_url: str | None = None) -> str:
    """Text with the key, any key-shaped token and any URL password replaced by ***."""
    text = str(text)
    if key and key != NO_KEY and len(key) >= 4:
        text = text.replace(key, "***")
    if base_url:
        password = urlsplit(base_url).password
        if password:
            text = text.replace(password, "***")
    return _KEYLIKE.sub(lambda m: f"{m.group(2)}***" if m.group(2) else "***", text)


def config_path(env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file and whether the user named it explicitly."""
    if env.get("TUNEFLEET_CONFIG"):
        return Path(env["TUNEFLEET_CONFIG"]).expanduser(), True
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "tunefleet" / "config.yml", False


def load_file(path: Path, explicit: bool) -> dict:
    if not path.exists():
        if explicit:
            raise UserError(f"TUNEFLEET_CONFIG names {path}, which does not exist")
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        # A YAML error quotes the offending line, which may hold the key: keep only where it is.
        where = getattr(e, "problem_mark", None)
        raise UserError(f"cannot read {path}: " + (f"not valid YAML at line {where.line + 1}" if where else
                                                    getattr(e, "strerror", None) or "unreadable")) from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of settings ({', '.join(sorted(FILE_KEYS))})")
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(FILE_KEYS))})")
    return data


def _number(data: dict, name: str, kind, path: Path, minimum) -> dict:
    if name not in data:
        return {}
    try:
        value = kind(data[name])
    except (TypeError, ValueError):
        raise UserError(f"{path}: {name} must be a number, got {data[name]!r}") from None
    if value < minimum:
        raise UserError(f"{path}: {name} must be at least {minimum}")
    return {name: value}


def resolve(model: str | None = None, env: Mapping[str, str] | None = None) -> LLMConfig | None:
    """The endpoint to plan with, or None when there is none (or --model builtin)."""
    env = os.environ if env is None else env
    if model == BUILTIN:
        return None
    path, explicit = config_path(env)
    data = load_file(path, explicit)

    base_url = env.get("OPENAI_BASE_URL") or data.get("base_url")
    key = env.get("OPENAI_API_KEY")
    if not key and data.get("api_key_env"):
        key = env.get(str(data["api_key_env"]))
    if not key and data.get("api_key"):
        key = str(data["api_key"])
    from_file = (base_url and not env.get("OPENAI_BASE_URL")) or (key and not env.get("OPENAI_API_KEY"))
    name = model or env.get("TUNEFLEET_MODEL") or data.get("model")
    if not base_url and not key:
        if model:
            raise UserError(f"--model {model}: no model endpoint is configured; set OPENAI_BASE_URL "
                            f"(and OPENAI_API_KEY if the endpoint needs one) or write {path}")
        return None
    if base_url and urlsplit(str(base_url)).scheme not in ("http", "https"):
        raise UserError("the model endpoint must be an http(s) URL, got "
                        + redact(strip_userinfo(str(base_url)), key))
    if not base_url and not name:
        name = DEFAULT_MODEL  # OpenAI's own endpoint; elsewhere the endpoint is asked which model it serves
    extra = {}
    extra.update(_number(data, "timeout", float, path, 1))
    extra.update(_number(data, "max_retries", int, path, 0))
    extra.update(_number(data, "max_turns", int, path, 2))
    extra.update(_number(data, "max_invalid", int, path, 1))
    return LLMConfig(model=str(name) if name else None, base_url=str(base_url).rstrip("/") if base_url else None,
                     api_key=key or NO_KEY, source=f"config file {path}" if from_file else "environment", **extra)
