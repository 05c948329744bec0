"""Typed value samplers: plausible argument values for a parameter schema.

The offline request writer needs values a user would really say: a city for
`location`, an ISO date for a date, a member of the enum, a number inside
`minimum`/`maximum`, an example the description itself gives ("e.g. 'Berkeley, CA'").
The parameter's name and description choose the sampler; the schema's type always
wins, so every sampled value validates against the schema.
"""

from __future__ import annotations

import random
import re
import string
from typing import Any

CITIES = ["Berlin", "Paris", "Tokyo", "Toronto", "Madrid", "Lisbon", "Nairobi", "Seoul", "Austin",
          "Denver", "Oslo", "Prague", "Mumbai", "Sydney", "Chicago", "Boston", "Lima", "Cairo", "Dublin",
          "Vienna", "Zurich", "Osaka", "Seattle", "Portland", "Singapore", "Istanbul", "Montreal"]
US_CITIES = ["Berkeley, CA", "Austin, TX", "Seattle, WA", "Boston, MA", "Denver, CO", "Chicago, IL",
             "Portland, OR", "Miami, FL", "Phoenix, AZ", "Atlanta, GA", "San Diego, CA", "New York, NY"]
COUNTRIES = ["Germany", "France", "Japan", "Canada", "Spain", "Kenya", "Brazil", "India", "Norway", "Mexico"]
FIRST = ["Alice", "Bob", "Carlos", "Dana", "Elif", "Farah", "Goran", "Hana", "Ivan", "Julia", "Kenji",
         "Lena", "Marco", "Nina", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Victor"]
LAST = ["Smith", "Garcia", "Müller", "Okafor", "Tanaka", "Rossi", "Novak", "Silva", "Kim", "Larsen"]
LANGUAGES = ["English", "Spanish", "French", "German", "Japanese", "Portuguese", "Italian", "Korean"]
TOPICS = ["electric cars", "machine learning", "climate change", "jazz history", "vegan recipes",
          "remote work", "solar panels", "marathon training", "quantum computing", "home gardening",
          "budget travel", "chess openings", "coffee brewing", "space telescopes", "python testing"]
THINGS = ["quarterly report", "blue widget", "launch plan", "team offsite", "invoice batch",
          "customer survey", "design review", "backup job", "onboarding guide", "summer sale"]
WORDS = ["alpha", "beacon", "cedar", "delta", "ember", "falcon", "garnet", "harbor", "indigo", "juniper"]
CURRENCIES = ["USD", "EUR", "JPY", "GBP", "CHF", "CAD", "INR", "BRL"]
COLORS = ["red", "blue", "green", "black", "white", "silver", "yellow"]
EXAMPLE = re.compile(r"(?:e\.g\.,?|for example,?|such as|like)\s*((?:'[^']{1,40}'|\"[^\"]{1,40}\")"
                     r"(?:\s*(?:,|or|and)\s*(?:'[^']{1,40}'|\"[^\"]{1,40}\"))*)", re.IGNORECASE)
QUOTED = re.compile(r"'([^']{1,40})'|\"([^\"]{1,40})\"")


def examples_in(description: str) -> list[str]:
    """Values a description gives as examples: "such as 'Berkeley, CA' or 'NY'"."""
    out = []
    for m in EXAMPLE.finditer(description or ""):
        out += [a or b for a, b in QUOTED.findall(m.group(1))]
    return [v for v in out if v.strip()]


def _words(name: str, description: str) -> str:
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ").lower()
    return f" {name} | {(description or '').lower()} "


def _has(text: str, *keys: str) -> bool:
    return any(re.search(rf"\b{k}", text) for k in keys)


def sample_string(name: str, schema: dict[str, Any], rng: random.Random) -> str:
    description = schema.get("description", "")
    examples = examples_in(description)
    if examples and rng.random() < 0.5:
        return rng.choice(examples)
    n = _words(name, "")
    d = _words(name, description)
    if _has(n, "email", "mail"):
        return f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}@example.com".replace("ü", "u")
    if re.search(r"\bip\b|ip address|ipv4", n):
        return f"{rng.randint(10, 203)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if _has(n, "domain", "hostname", "host"):
        return f"{rng.choice(WORDS)}.example.org"
    if _has(n, "url", "link", "website", "endpoint", "uri"):
        return f"https://{rng.choice(WORDS)}.example.com/{rng.choice(WORDS)}"
    if _has(n, "date", "day", "start", "end", "deadline", "birthday") and not _has(n, "time"):
        return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if _has(n, "datetime", "timestamp"):
        return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(7, 20):02d}:{rng.choice(['00', '15', '30', '45'])}:00"
    if _has(n, "time"):
        return f"{rng.randint(7, 21):02d}:{rng.choice(['00', '15', '30', '45'])}"
    if _has(n, "phone", "mobile"):
        return f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
    if _has(n, "path", "file", "dir", "folder", "filename"):
        return rng.choice([f"/home/user/{rng.choice(WORDS)}/{rng.choice(WORDS)}.txt",
                           f"{rng.choice(WORDS)}_{rng.randint(1, 99)}.{rng.choice(['csv', 'txt', 'json', 'md'])}"])
    if _has(n, "city", "location", "place", "destination", "origin", "from", "to", "address", "area", "region"):
        return rng.choice(US_CITIES if _has(d, "state", r"city, st") else CITIES)
    if _has(n, "country"):
        return rng.choice(COUNTRIES)
    if _has(n, "language", "lang", "locale"):
        return rng.choice(LANGUAGES)
    if _has(n, "currency"):
        return rng.choice(CURRENCIES)
    if _has(n, "color", "colour"):
        return rng.choice(COLORS)
    if re.search(r"\b(id|ids|uuid|key|token)\b", n):  # "user id" is an id, not a name
        return rng.choice([f"{rng.choice(WORDS)}-{rng.randint(100, 9999)}", str(rng.randint(1000, 99999))])
    if _has(n, "first name", "firstname"):
        return rng.choice(FIRST)
    if _has(n, "last name", "lastname", "surname"):
        return rng.choice(LAST)
    if _has(n, "name", "user", "author", "owner", "recipient", "assignee", "contact", "person"):
        return rng.choice([rng.choice(FIRST), f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                           f"{rng.choice(FIRST).lower()}_{rng.randint(1, 99)}"])
    if _has(n, "id", "key", "token", "uuid", "apikey", "api key", "secret", "password", "code", "hash", "sku", "number"):
        alphabet = string.ascii_lowercase + string.digits
        return rng.choice([f"{rng.choice(WORDS)}-{rng.randint(100, 9999)}",
                           "".join(rng.choice(alphabet) for _ in range(8)), str(rng.randint(1000, 99999))])
    if _has(n, "query", "keyword", "search", "topic", "term", "subject", "question", "prompt", "text"):
        return rng.choice(TOPICS)
    if _has(n, "message", "content", "body", "note", "comment", "description", "title", "caption"):
        return f"{rng.choice(['Reminder about', 'Notes on', 'Update on', 'Question about'])} the {rng.choice(THINGS)}"
    if _has(n, "status", "state", "mode", "type", "category", "level", "kind", "sort", "order", "format"):
        return rng.choice(["active", "pending", "archived", "default", "high", "low", "daily", "summary"])
    return rng.choice([rng.choice(THINGS), f"{rng.choice(WORDS)}-{rng.randint(1, 99)}", rng.choice(WORDS)])


def _bounds(schema: dict[str, Any], low: float, high: float) -> tuple[float, float]:
    lo = schema.get("minimum", schema.get("exclusiveMinimum", low))
    hi = schema.get("maximum", schema.get("exclusiveMaximum", high))
    if "exclusiveMinimum" in schema:
        lo += 1
    if "exclusiveMaximum" in schema:
        hi -= 1
    if lo > hi:
        lo, hi = hi, lo
    return lo, hi


def sample_number(name: str, schema: dict[str, Any], rng: random.Random, integer: bool) -> int | float:
    n = _words(name, "")
    if _has(n, "year"):
        low, high = 2015, 2026
    elif _has(n, "age"):
        low, high = 18, 80
    elif _has(n, "port"):
        low, high = 1024, 9000
    elif _has(n, "lat"):
        low, high = -60, 70
    elif _has(n, "lon", "lng"):
        low, high = -150, 150
    elif _has(n, "price", "amount", "cost", "budget", "salary", "balance", "value"):
        low, high = 5, 2000
    elif _has(n, "percent", "rate", "ratio", "probability", "threshold"):
        low, high = (1, 100) if integer else (0.05, 0.95)
    elif _has(n, "count", "limit", "num", "size", "quantity", "page", "max", "min", "top", "days", "hours", "guests", "people"):
        low, high = 1, 20
    elif _has(n, "id"):
        low, high = 100, 99999
    else:
        low, high = 1, 100
    lo, hi = _bounds(schema, low, high)
    if integer:
        return rng.randint(int(lo), int(hi))
    return round(rng.uniform(lo, hi), 2 if hi - lo < 10 else 1)


def sample_value(name: str, schema: dict[str, Any], rng: random.Random, depth: int = 0) -> Any:
    """A value for parameter `name` that validates against `schema`."""
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "boolean":
        return rng.random() < 0.5
    if kind in ("integer", "number"):
        return sample_number(name, schema, rng, integer=kind == "integer")
    if kind == "array":
        items = schema.get("items") or {"type": "string"}
        singular = name.removesuffix("s")
        n = rng.randint(max(1, schema.get("minItems", 1)), min(3, schema.get("maxItems", 3)))
        out: list[Any] = []
        for _ in range(n * 4):
            v = sample_value(singular, items, rng, depth + 1)
            if v not in out:
                out.append(v)
            if len(out) == n:
                break
        return out
    if kind == "object":
        props = schema.get("properties") or {}
        if not props or depth > 1:
            return {rng.choice(WORDS): rng.choice(THINGS)}
        required = [k for k in schema.get("required", []) if k in props]
        chosen = required + [k for k in props if k not in required and rng.random() < 0.3]
        return {k: sample_value(k, props[k], rng, depth + 1) for k in (chosen or list(props)[:1])}
    return sample_string(name, schema, rng)


def say_value(value: Any) -> str:
    """How a value reads inside a sentence: lists joined with "and", dicts as pairs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        parts = [say_value(v) for v in value]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {say_value(v)}" for k, v in value.items())
    return str(value)
