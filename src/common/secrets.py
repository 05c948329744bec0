"""Keys stay out of every file the project writes.

A parameter that names an environment variable (`teacher_api_key_env`) must look like a
variable's name; a value that looks like an API key (OpenAI, Anthropic, W&B, Hugging Face,
Composio, GitHub patterns), wherever it is given, is refused with a message that does not
repeat it. Recorded command lines redact such values.
"""

from __future__ import annotations

import re
from typing import Any

from common.errors import UserError

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Prefixes documented by each provider, each at the start of a word (so `task-specific-...`
# is no key); the length floor keeps ordinary words out.
_START = r"(?<![A-Za-z0-9])"
KEY_PATTERNS = tuple(re.compile(_START + p) for p in (
    r"sk-(?:proj-|ant-(?:api\d+-)?|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}",  # OpenAI, Anthropic
    r"hf_[A-Za-z0-9]{20,}",                          # Hugging Face token
    r"(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]{20,}",  # GitHub
    r"ak_[A-Za-z0-9_\-]{16,}",                       # Composio
    r"[0-9a-f]{40}(?![0-9a-f])",                     # W&B API key (40 hex)
    r"wandb_v\d_[A-Za-z0-9_\-]{20,}",                # W&B v1 keys
))
REDACTED = "<redacted>"


def looks_like_key(value: Any) -> bool:
    return isinstance(value, str) and any(p.search(value) for p in KEY_PATTERNS)


def redact(text: str) -> str:
    for p in KEY_PATTERNS:
        text = p.sub(REDACTED, text)
    return text


def check_env_name(value: str, field: str) -> str:
    """A parameter that names an environment variable, refused if it holds anything else."""
    if looks_like_key(value):
        raise UserError(f"{field} holds what looks like an API key; it takes the NAME of the environment "
                        f"variable that holds the key (e.g. {field}=OPENAI_API_KEY), and the key goes in that "
                        "variable (or in an ignored .env file)")
    if not ENV_NAME.match(value or ""):
        raise UserError(f"{field}={value!r} is not an environment variable's name (A-Z, 0-9 and _, "
                        "not starting with a digit), e.g. OPENAI_API_KEY")
    return value


def refuse_keys(params: dict[str, Any], where: str = "the parameters") -> None:
    """Refuse any parameter value (at any depth) that looks like a key, without repeating it."""
    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")
        elif looks_like_key(value):
            raise UserError(f"{key} in {where} looks like an API key; keys never go in parameters (they are "
                            "recorded in results and W&B): put it in an environment variable and name that")
    walk(params, "")
