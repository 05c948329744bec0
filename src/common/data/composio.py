"""Tool schemas from Composio, the optional online source of real-world toolkits.

The Kinetic-4B project trained on the schemas Composio serves for its toolkits
(GitHub, Gmail, Slack, ...). This module fetches them the same way, through the
official `composio` SDK, and stores one JSONL file per toolkit, one OpenAI tool per
line, which the data builder reads like any shipped tool catalogue:

    from common.data.composio import fetch_toolkits
    paths = fetch_toolkits(["GITHUB", "GMAIL"], Path("data/composio"))  # COMPOSIO_API_KEY set

The SDK call is `Composio(api_key=...).tools.get(user_id=..., toolkits=[slug],
limit=...)` with the SDK's default OpenAI provider, so the schemas are exactly what
an agent using Composio sees (including the SDK's "This parameter is required."
notes in descriptions). The offline default of the builder never calls this module
and needs no key.

A toolkit whose file exists is not fetched again: each file is written to a
temporary name and renamed when complete, so an interrupted fetch leaves no file
that looks finished and simply resumes. Delete a file to fetch that toolkit anew.

The SDK is optional and imported only here, when a fetch needs it:
`pip install composio==0.30.0`. That release requires certifi>=2026.10.19; where the
package index lacks it, install it on top of requirements.txt without its pins:
`pip install --no-deps composio==0.30.0 composio-client==2.0.0rc19
json-schema-to-pydantic==0.5.0 pysher==1.0.8`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from common.samples import normalize_tool

API_KEY_ENV = "COMPOSIO_API_KEY"
# The tools listing takes at most 1000 items per page, and `tools.get` asks for one
# page only (it does not follow `next_cursor`), so without a limit we ask for the most.
MAX_PAGE = 1000
# Schemas do not depend on the user; the SDK needs some user id all the same.
USER_ID = "default"
INSTALL_HINT = (
    "pip install composio==0.30.0  (if pip cannot find certifi>=2026.10.19: pip install --no-deps "
    "composio==0.30.0 composio-client==2.0.0rc19 json-schema-to-pydantic==0.5.0 pysher==1.0.8)")


class ComposioUnavailable(RuntimeError):
    """No key or no SDK: the message says what to set or install."""


def toolkit_path(out_dir: Path, toolkit: str) -> Path:
    return Path(out_dir) / f"{toolkit.lower()}.jsonl"


def is_complete(path: Path) -> bool:
    """The file was finished by a fetch: it exists (it is renamed into place only when
    complete) and every line is a JSON tool, so a hand-truncated file is fetched again."""
    if not path.exists():
        return False
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return bool(lines) and all(json.loads(line)["type"] == "function" for line in lines)
    except (json.JSONDecodeError, KeyError, TypeError):
        return False


def make_client(api_key: str | None = None) -> Any:
    """A Composio SDK client; the key comes from `api_key` or COMPOSIO_API_KEY."""
    key = api_key or os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise ComposioUnavailable(
            f"fetching Composio toolkits needs an API key: set {API_KEY_ENV} (or pass api_key). "
            "The offline default of the data builder uses the shipped tool catalogue and needs no key.")
    try:
        from composio import (
            Composio,  # optional: only fetching Composio toolkits needs the SDK
        )
    except ImportError as err:
        raise ComposioUnavailable(
            f"the Composio SDK is not installed ({err}); install it with `{INSTALL_HINT}`") from None
    # allow_tracking=False: the SDK otherwise posts a telemetry event per call from a
    # background thread, outside the HTTP client it is given.
    return Composio(api_key=key, allow_tracking=False)


def as_openai_tool(tool: Any) -> dict[str, Any]:
    """`{"type": "function", "function": {name, description, parameters}}` from what the
    SDK's OpenAI provider returns (a ChatCompletionToolParam dict, whose `strict: None`
    is dropped: it is not part of a schema we train on)."""
    if hasattr(tool, "model_dump"):
        tool = tool.model_dump()
    function = tool["function"]
    return normalize_tool({"type": "function", "function": {
        "name": function["name"], "description": function.get("description") or "",
        "parameters": function.get("parameters") or {"type": "object", "properties": {}}}})


def fetch_toolkit(client: Any, toolkit: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The OpenAI tools of one toolkit, in the order the API lists them."""
    wanted = limit if limit is not None else MAX_PAGE
    tools = [as_openai_tool(t) for t in client.tools.get(user_id=USER_ID, toolkits=[toolkit], limit=wanted)]
    if not tools:
        raise ValueError(f"Composio returned no tools for toolkit {toolkit!r}; check the slug "
                         "(for example GITHUB, GMAIL, SLACK)")
    if limit is None and len(tools) >= MAX_PAGE:
        print(f"[composio] {toolkit}: {len(tools)} tools, the most one request returns; "
              "the toolkit may hold more", flush=True)
    return tools


def fetch_toolkits(toolkits: list[str], out_dir: Path, api_key: str | None = None, client: Any = None,
                   limit: int | None = None) -> dict[str, Path]:
    """Fetch each toolkit's tools into `out_dir/<toolkit>.jsonl`; return toolkit -> path.

    Toolkits already fetched are skipped without a key or a request, so a builder
    can call this on every run. `client` is any object with the SDK's
    `tools.get(user_id=, toolkits=, limit=)` (tests pass an SDK client whose HTTP is
    served from a recording); `limit` caps the tools per toolkit.
    """
    out_dir = Path(out_dir)
    paths = {toolkit: toolkit_path(out_dir, toolkit) for toolkit in toolkits}
    missing = [toolkit for toolkit, path in paths.items() if not is_complete(path)]
    if not missing:
        return paths
    if client is None:
        client = make_client(api_key)
    out_dir.mkdir(parents=True, exist_ok=True)
    for toolkit in missing:
        tools = fetch_toolkit(client, toolkit, limit)
        path = paths[toolkit]
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with tmp.open("w", encoding="utf-8") as f:
            for tool in tools:
                f.write(json.dumps(tool, ensure_ascii=False) + "\n")
        tmp.replace(path)
        print(f"[composio] {toolkit}: {len(tools)} tools -> {path}", flush=True)
    return paths
