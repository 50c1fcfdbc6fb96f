"""Ground the object names in a generated response to the objects that exist in the scene.

A model's response (Explain / Subtasks / Code / Target States, see :mod:`octopus.protocol`) may name
objects the scene does not have. Following §5.1 of the Octopus paper (arXiv 2310.08588), each unknown
name is mapped to the closest existing one:

1. the name exists (ignoring case) -> kept (case fixed if needed);
2. its category (the name without a trailing ``_<digits>``) exists -> the nearest instance of it;
3. otherwise the existing category with the best :class:`difflib.SequenceMatcher` ratio, if that ratio is
   at least ``min_similarity`` (ties: the category whose nearest instance is nearer), and its nearest
   instance; below the threshold the name is *unresolved* and left as is.

Names are taken from ``registry(env, "name")`` string literals and from the object slots of the Target
States lines; every whole-word occurrence of a mapped name in the text is then replaced, so the code's
variables, the subtasks and the target states stay consistent. Plain regexes are used throughout, so
text that :func:`~octopus.protocol.parse_response` rejects is handled too, and nothing raises.

Usage::

    g = ground_names(response_text, {"rag_1": 0.8, "rag_2": 2.5, "cabinet_1": 1.2})
    g.text, g.mapping, g.unresolved
"""
from __future__ import annotations

import difflib
import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass

from octopus.protocol import ACT_PARAMS, API_FUNCTIONS, BINARY_RELATIONS, STATE_ALIASES, UNARY_STATES

#: Words that are never object names, so never renamed (compared lower-cased).
PROTECTED: frozenset[str] = frozenset(
    {w.lower() for w in (*UNARY_STATES, *UNARY_STATES.values(), *STATE_ALIASES, *BINARY_RELATIONS,
                         *ACT_PARAMS, *(f.name for f in API_FUNCTIONS), *keyword.kwlist)}
    | {"robot", "inventory", "none", "empty", "nothing", "object", "information", "true", "false"})

_REGISTRY = re.compile(r"\bregistry\s*\([^,()\n]*,\s*(?:obj_name\s*=\s*)?(?:\"([^\"\n]*)\"|'([^'\n]*)')")
_TARGET_HEADER = re.compile(r"^[^\w\n]*target[ \t]+states?\b[^\n]*$", re.I | re.M)
_LABEL = re.compile(r"^\s*(?:\(\w{1,2}\)|\w{1,2}[.)]|[-*\u2022])\s*")
_SECTION_LABEL = re.compile(r"^[*_]{0,2}(?:inventory|object\s+information)\b[^:]*:", re.I)
_ITEM = re.compile(r"^[A-Za-z][\w.\-]*_\d+$")  # scene objects always carry an instance index
_INDEX = re.compile(r"_\d+$")


@dataclass(frozen=True)
class Grounding:
    """The grounded response and what was changed."""

    text: str                     # the response with names replaced
    mapping: dict[str, str]       # unknown name -> chosen existing name (only names that changed)
    unresolved: tuple[str, ...]   # names with no existing category similar enough (left as is)


def category(name: str) -> str:
    """``apple_12`` -> ``apple`` (lower-cased); names without an index are their own category."""
    return _INDEX.sub("", name.strip()).lower()


def _target_state_names(text: str) -> list[str]:
    """Object names in the Target States section: comma-separated items shaped like ``name_<digits>``."""
    headers = list(_TARGET_HEADER.finditer(text))
    if not headers:
        return []
    names = []
    for line in text[headers[-1].end():].splitlines():
        line = re.sub(r"\s(?:#|//).*$", "", _LABEL.sub("", line, count=1))
        line = _SECTION_LABEL.sub("", line.strip(), count=1)
        for item in line.strip().strip("[]().;").split(","):
            item = item.strip().strip("'\"`*")
            if _ITEM.match(item):
                names.append(item)
    return names


def _candidates(text: str) -> list[str]:
    """Names to check, in order of first appearance (code first, then target states), deduplicated."""
    found = [(m.group(1) if m.group(1) is not None else m.group(2)).strip() for m in _REGISTRY.finditer(text)]
    found += _target_state_names(text)
    return list(dict.fromkeys(n for n in found if n and n.lower() not in PROTECTED))


def resolve(name: str, objects: Mapping[str, float], min_similarity: float = 0.5) -> str | None:
    """The existing object ``name`` refers to (itself if it exists), or None if nothing is close enough."""
    if name in objects:
        return name
    by_lower = {o.lower(): o for o in sorted(objects)}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    instances: dict[str, list[str]] = {}
    for o in sorted(objects, key=lambda o: (float(objects[o]), o)):  # nearest first, then by name
        instances.setdefault(category(o), []).append(o)
    cat = category(name)
    if cat in instances:
        return instances[cat][0]
    scored = [(difflib.SequenceMatcher(None, cat, c).ratio(), c) for c in instances]
    best = min(scored, key=lambda s: (-s[0], float(objects[instances[s[1]][0]]), s[1]), default=None)
    return instances[best[1]][0] if best and best[0] >= min_similarity else None


def ground_names(response: str, objects: Mapping[str, float], min_similarity: float = 0.5) -> Grounding:
    """Replace unknown object names in ``response`` by their closest existing names (see module doc)."""
    mapping: dict[str, str] = {}
    unresolved: list[str] = []
    for name in _candidates(response):
        target = resolve(name, objects, min_similarity)
        if target is None:
            unresolved.append(name)
        elif target != name:
            mapping[name] = target
    if not mapping:
        return Grounding(response, {}, tuple(unresolved))
    # One pass, longest first, so a replacement is never itself replaced and rag_1 never matches in rag_12.
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, sorted(mapping, key=len, reverse=True)))
                         + r")(?!\w)")
    return Grounding(pattern.sub(lambda m: mapping[m.group(0)], response), mapping, tuple(unresolved))
