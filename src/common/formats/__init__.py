"""Tool-call formats by name: `get_format("hermes")`, `FORMATS` lists them."""

from __future__ import annotations

from common.formats.base import ParsedOutput, ParseError, ToolCallFormat
from common.formats.functiongemma import FunctionGemmaFormat
from common.formats.hermes import HermesFormat
from common.formats.pythonic import PythonicFormat
from common.formats.qwen_xml import QwenXmlFormat

FORMATS: dict[str, type[ToolCallFormat]] = {
    f.name: f for f in (HermesFormat, QwenXmlFormat, FunctionGemmaFormat, PythonicFormat)}


def get_format(name: str) -> ToolCallFormat:
    if name not in FORMATS:
        raise ValueError(f"unknown tool-call format {name!r}; choose one of {sorted(FORMATS)}")
    return FORMATS[name]()


__all__ = ["FORMATS", "ParseError", "ParsedOutput", "ToolCallFormat", "get_format"]
