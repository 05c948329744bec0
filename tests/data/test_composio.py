"""Composio tool schemas: fetched through the real SDK from recorded responses, never the network.

The fixtures tests/fixtures/composio_tools_<toolkit>.json are bodies of
`GET /api/v3.1/tools`, shaped after composio_client/types/tool_list_response.py
(composio-client 2.0.0rc19, which composio 0.30.0 pins). They are served through an
`httpx.MockTransport` handed to the SDK as its `http_client`, so the SDK's own
request building, response parsing and OpenAI wrapping run.

The SDK is not in requirements.txt (composio 0.30.0 needs a certifi release the
package index lacks), so the tests that drive it are skipped where it is not
installed; see the install hint in common/composio_source.py.
"""

import functools
import json
from pathlib import Path

import httpx
import jsonschema
import pytest

from common.data import composio as composio_source
from common.data.composio import ComposioUnavailable, fetch_toolkits

FIXTURES = Path(__file__).parents[1] / "fixtures"


class RecordedComposio:
    """An httpx transport that answers the tools listing from the fixtures and logs each request."""

    def __init__(self):
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.method == "GET" and request.url.path == "/api/v3.1/tools", request.url
        toolkit = request.url.params["toolkit_slug"].lower()
        return httpx.Response(200, json=json.loads((FIXTURES / f"composio_tools_{toolkit}.json").read_text()))


@pytest.fixture
def sdk():
    return pytest.importorskip("composio", reason="the Composio SDK is optional and not installed")


@pytest.fixture
def recorded():
    return RecordedComposio()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fetch_writes_one_openai_tool_per_line_per_toolkit(sdk, recorded, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOSIO_API_KEY", "ak_recorded")
    # fetch_toolkits builds its own client; give that client the recording as its HTTP layer
    monkeypatch.setattr(sdk, "Composio",
                        functools.partial(sdk.Composio, http_client=httpx.Client(transport=recorded.transport)))
    paths = fetch_toolkits(["GITHUB", "gmail"], tmp_path / "composio")

    assert paths == {"GITHUB": tmp_path / "composio" / "github.jsonl",
                     "gmail": tmp_path / "composio" / "gmail.jsonl"}
    assert sorted(p.name for p in (tmp_path / "composio").iterdir()) == ["github.jsonl", "gmail.jsonl"]
    sent = recorded.requests
    assert [r.url.params["toolkit_slug"] for r in sent] == ["GITHUB", "gmail"]
    assert all(r.headers["x-api-key"] == "ak_recorded" and r.url.params["limit"] == "1000" for r in sent)

    github = read_jsonl(paths["GITHUB"])
    assert [t["function"]["name"] for t in github] == [
        "GITHUB_STAR_A_REPOSITORY_FOR_THE_AUTHENTICATED_USER", "GITHUB_CREATE_AN_ISSUE",
        "GITHUB_LIST_REPOSITORIES_FOR_THE_AUTHENTICATED_USER"]
    for tool in github + read_jsonl(paths["gmail"]):
        assert tool["type"] == "function" and set(tool["function"]) == {"name", "description", "parameters"}
        jsonschema.Draft202012Validator.check_schema(tool["function"]["parameters"])
    star = github[0]["function"]
    assert star["description"] == "Stars a github repository for the authenticated user."
    assert star["parameters"]["required"] == ["owner", "repo"]
    # the SDK's own schema pass ran: it appends type hints and required notes to descriptions
    assert star["parameters"]["properties"]["owner"]["description"] == (
        "The account owner of the repository. The name is not case sensitive. "
        "Please provide a value of type string. This parameter is required.")
    listing = github[2]["function"]["parameters"]
    assert "required" not in listing and listing["properties"]["sort"]["default"] == "full_name"


def test_second_fetch_reads_the_files_and_sends_nothing(sdk, recorded, tmp_path):
    client = sdk.Composio(api_key="ak_recorded", allow_tracking=False,
                          http_client=httpx.Client(transport=recorded.transport))
    first = fetch_toolkits(["GITHUB"], tmp_path, client=client, limit=2)
    assert len(recorded.requests) == 1 and recorded.requests[0].url.params["limit"] == "2"
    before = first["GITHUB"].read_text()

    again = fetch_toolkits(["GITHUB", "GMAIL"], tmp_path, client=client)
    assert [r.url.params["toolkit_slug"] for r in recorded.requests] == ["GITHUB", "GMAIL"]
    assert again["GITHUB"].read_text() == before

    # complete files need neither a request nor a key nor the SDK
    assert fetch_toolkits(["GITHUB", "GMAIL"], tmp_path) == again
    assert len(recorded.requests) == 2


def test_interrupted_fetch_is_fetched_again(sdk, recorded, tmp_path):
    client = sdk.Composio(api_key="ak_recorded", allow_tracking=False,
                          http_client=httpx.Client(transport=recorded.transport))
    (tmp_path / "gmail.jsonl.tmp123").write_text('{"type": "function", "func')  # killed mid-write
    (tmp_path / "github.jsonl").write_text('{"type": "function", "function": {"name": "GITHUB_X"}}\n{"ty')
    paths = fetch_toolkits(["GMAIL", "GITHUB"], tmp_path, client=client)
    assert len(recorded.requests) == 2
    assert [t["function"]["name"] for t in read_jsonl(paths["GMAIL"])] == ["GMAIL_SEND_EMAIL"]
    assert len(read_jsonl(paths["GITHUB"])) == 3


def test_missing_key_names_the_variable_and_the_offline_default(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPOSIO_API_KEY", raising=False)
    with pytest.raises(ComposioUnavailable, match="COMPOSIO_API_KEY") as err:
        fetch_toolkits(["GITHUB"], tmp_path)
    assert "offline default" in str(err.value) and "needs no key" in str(err.value)
    assert not list(tmp_path.iterdir())


def test_missing_sdk_says_how_to_install(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_composio(name, *args, **kwargs):
        if name == "composio" or name.startswith("composio."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_composio)
    with pytest.raises(ComposioUnavailable, match=r"pip install composio==0\.30\.0"):
        composio_source.make_client("ak_any")


def test_sdk_tool_objects_are_normalised():
    tool = {"type": "function", "function": {"name": "SLACK_POST", "description": None,
                                             "parameters": None, "strict": None}}
    assert composio_source.as_openai_tool(tool) == {"type": "function", "function": {
        "name": "SLACK_POST", "description": "", "parameters": {"type": "object", "properties": {}}}}
