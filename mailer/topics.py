"""The topic registry: which topics exist, and which section headings name them. Pure but for loading."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from mailer.errors import InputError
from subscribers.normalise import TOPIC_KEY, split_topics

# Fuzzy matching on very short names (QA, CI) would flag ordinary words as typos.
_MIN_FUZZY_LENGTH = 4


def _typo_distance(a: str, b: str) -> int:
    """Edit distance counting a swap of two neighbouring letters as one edit (optimal string alignment)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, start=1):
            cost = char_a != char_b
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def _allowed_typos(name: str) -> int:
    return 1 if len(name) < 7 else 2


def normalise_heading(text: str) -> str:
    """Case-folded, trimmed, inner whitespace collapsed, trailing colons dropped: what headings compare by."""
    return " ".join(text.strip().rstrip(":：").split()).casefold()


def _display(names: Mapping[str, str], lang: str, fallback: str) -> str:
    return names.get(lang) or names.get("en") or next(iter(names.values()), fallback)


@dataclass(frozen=True)
class Topic:
    key: str
    names: Mapping[str, str]
    aliases: tuple[str, ...] = ()
    group: str | None = None  # the key of a TopicGroup; pages list a group's topics together

    def display_name(self, lang: str = "en") -> str:
        return _display(self.names, lang, self.key)


@dataclass(frozen=True)
class TopicGroup:
    key: str
    names: Mapping[str, str]

    def display_name(self, lang: str = "en") -> str:
        return _display(self.names, lang, self.key)


OTHER_GROUP = TopicGroup("other", {"en": "Other topics", "zh": "其他主题"})


@dataclass(frozen=True)
class TopicRegistry:
    topics: tuple[Topic, ...]
    groups: tuple[TopicGroup, ...] = ()
    _by_name: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, str] = {}
        for topic in self.topics:
            for spelling in (topic.key, *topic.names.values(), *topic.aliases):
                by_name.setdefault(normalise_heading(spelling), topic.key)
        object.__setattr__(self, "_by_name", by_name)

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(t.key for t in self.topics)

    def get(self, key: str) -> Topic:
        for topic in self.topics:
            if topic.key == key:
                return topic
        raise InputError(f"unknown topic {key!r}; known topics: {', '.join(sorted(self.keys))}")

    def grouped(self) -> list[tuple[TopicGroup, list[Topic]]]:
        """The topics by group, in the registry's order; topics of no group last, under OTHER_GROUP."""
        out = [(group, [t for t in self.topics if t.group == group.key]) for group in self.groups]
        known = {group.key for group in self.groups}
        rest = [t for t in self.topics if t.group not in known]
        if rest:
            out.append((OTHER_GROUP, rest))
        return [(group, topics) for group, topics in out if topics]

    def match(self, heading: str) -> str | None:
        """The key of the topic a heading names, or None for a general heading."""
        return self._by_name.get(normalise_heading(heading))

    def suggest(self, heading: str) -> Topic | None:
        """The topic a heading is a likely typo of ("Tempst" -> Tempest), or None."""
        wanted = normalise_heading(heading)
        if len(wanted) < _MIN_FUZZY_LENGTH or wanted in self._by_name:
            return None
        best: tuple[int, str] | None = None
        for name, key in self._by_name.items():
            if len(name) < _MIN_FUZZY_LENGTH or abs(len(name) - len(wanted)) > 2:
                continue
            distance = _typo_distance(wanted, name)
            if distance <= _allowed_typos(name) and (best is None or distance < best[0]):
                best = (distance, key)
        return self.get(best[1]) if best else None

    def parse_keys(self, text: str | Iterable[str]) -> frozenset[str]:
        """Topic keys from "nova,neutron" (names and aliases accepted; the separators of every topic list,
        ``subscribers.normalise.split_topics``); an unknown one is an InputError."""
        parts = split_topics(text) if isinstance(text, str) else list(text)
        keys = set()
        for part in (p.strip() for p in parts):
            if not part:
                continue
            key = self.match(part)
            if key is None:
                hint = self.suggest(part)
                did_you_mean = f" (did you mean {hint.key}?)" if hint else ""
                raise InputError(f"unknown topic {part!r}{did_you_mean}")
            keys.add(key)
        return frozenset(keys)


def _names(value: object, where: str, fallback: str) -> dict[str, str]:
    names = value or {"en": fallback}
    if not isinstance(names, Mapping):
        raise InputError(f"{where}: 'names' must be a mapping of language to name")
    empty = [str(k) for k, v in names.items() if not isinstance(v, str | int | float) or not str(v).strip()]
    if empty:  # `{en: A, B}` in YAML flow style: the comma made a second key with no name
        raise InputError(f"{where}: 'names' has no name for {empty[0]!r} (quote a name that holds a comma)")
    return {str(k): str(v) for k, v in names.items()}


def registry_from_data(data: object, source: str = "topics") -> TopicRegistry:
    if not isinstance(data, Mapping) or not isinstance(data.get("topics"), list):
        raise InputError(f"{source}: expected a mapping with a 'topics' list")
    groups: list[TopicGroup] = []
    for index, entry in enumerate(data.get("groups") or [], start=1):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str):
            raise InputError(f"{source}: group #{index} has no 'key'")
        key = entry["key"].strip().lower()
        if any(g.key == key for g in groups):
            raise InputError(f"{source}: group key {key!r} appears twice")
        groups.append(TopicGroup(key, _names(entry.get("names"), f"{source}: group {key!r}", key)))
    group_keys = {g.key for g in groups}
    topics: list[Topic] = []
    seen: set[str] = set()
    for index, entry in enumerate(data["topics"], start=1):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str):
            raise InputError(f"{source}: topic #{index} has no 'key'")
        key = entry["key"].strip().lower()
        if not TOPIC_KEY.fullmatch(key):
            raise InputError(f"{source}: topic key {key!r} must be lower-case letters, digits, '-' or '_'")
        if key in seen:
            raise InputError(f"{source}: topic key {key!r} appears twice")
        seen.add(key)
        aliases = entry.get("aliases") or []
        if not isinstance(aliases, list):
            raise InputError(f"{source}: topic {key!r}: 'aliases' must be a list")
        group = entry.get("group")
        if group is not None and str(group).strip().lower() not in group_keys:
            raise InputError(f"{source}: topic {key!r}: group {group!r} is not in 'groups'")
        topics.append(
            Topic(
                key=key,
                names=_names(entry.get("names"), f"{source}: topic {key!r}", key),
                aliases=tuple(map(str, aliases)),
                group=str(group).strip().lower() if group is not None else None,
            )
        )
    return TopicRegistry(tuple(topics), tuple(groups))


@lru_cache(maxsize=8)
def load_registry(path: Path) -> TopicRegistry:
    """The registry in a YAML data file, loaded once per path."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: topic registry file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the topic registry: {str(exc).splitlines()[0]}") from None
    return registry_from_data(data, str(path))
