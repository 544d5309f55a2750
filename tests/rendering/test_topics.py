from __future__ import annotations

import io
import re

import pytest
from support.paths import TOPICS_FILE

from mailer.errors import InputError
from mailer.topics import TopicRegistry, load_registry, registry_from_data

REQUIRED = [
    "nova",
    "neutron",
    "cinder",
    "swift",
    "glance",
    "keystone",
    "horizon",
    "heat",
    "ceilometer",
    "trove",
    "ironic",
    "sahara",
    "tempest",
    "oslo",
    "marconi",
    "designate",
    "barbican",
    "manila",
    "ceph",
    "devstack",
    "infra",
]


def test_registry_is_seeded_with_openstack_projects(registry: TopicRegistry) -> None:
    assert set(REQUIRED) <= registry.keys
    assert registry.match("QA") == "tempest"
    assert registry.match("  nOvA ") == "nova"
    assert registry.match("Common") is None
    assert registry.match("业界动态") is None


@pytest.mark.parametrize(
    ("heading", "expected"), [("Tempst", "tempest"), ("Neutorn", "neutron"), ("Keystnoe", "keystone")]
)
def test_typos_suggest_the_close_topic(registry: TopicRegistry, heading: str, expected: str) -> None:
    suggestion = registry.suggest(heading)
    assert suggestion is not None and suggestion.key == expected


@pytest.mark.parametrize("heading", ["Common", "业界动态", "社区跟踪", "Nova", "Bugs", "Q&A"])
def test_no_suggestion_for_real_names_or_unrelated_words(registry: TopicRegistry, heading: str) -> None:
    assert registry.suggest(heading) is None


def test_parse_keys_accepts_names_and_rejects_unknown(registry: TopicRegistry) -> None:
    assert registry.parse_keys("nova, Neutron;QA") == {"nova", "neutron", "tempest"}
    with pytest.raises(InputError, match="did you mean nova"):
        registry.parse_keys("nvoa")


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"topics": "x"},
        {"topics": [{"names": {}}]},
        {"topics": [{"key": "A B"}]},
        {"topics": [{"key": "a"}, {"key": "a"}]},
    ],
)
def test_bad_registry_data_is_an_input_error(data: object) -> None:
    with pytest.raises(InputError):
        registry_from_data(data)


def test_topic_lists_take_the_same_separators_everywhere(registry):
    from subscribers.csvreader import read_rows

    text = "Nova，neutron；Cinder、heat | keystone; tempest,ceilometer"
    expected = {"nova", "neutron", "cinder", "heat", "keystone", "tempest", "ceilometer"}
    assert registry.parse_keys(text) == expected
    csv = f'email,topics\nann@example.org,"{text}"\n'.encode()
    (row,) = list(read_rows(io.BytesIO(csv)))
    assert {registry.match(name) for name in row.topics} == expected


def test_groups_gather_topics_in_registry_order_and_the_rest_go_last():
    registry = registry_from_data(
        {
            "groups": [{"key": "core", "names": {"en": "Core", "zh": "核心"}}],
            "topics": [
                {"key": "nova", "group": "core"},
                {"key": "heat"},
                {"key": "neutron", "group": "Core"},
            ],
        }
    )
    grouped = [(g.display_name("zh"), [t.key for t in topics]) for g, topics in registry.grouped()]
    assert grouped == [("核心", ["nova", "neutron"]), ("其他主题", ["heat"])]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"topics": [{"key": "nova", "group": "nope"}]}, "group 'nope' is not in 'groups'"),
        ({"groups": [{"key": "a"}, {"key": "a"}], "topics": []}, "group key 'a' appears twice"),
        ({"groups": [{"key": "a", "names": {"en": "A", "B": None}}], "topics": []}, "quote a name"),
        ({"topics": [{"key": "nova", "names": {"en": ""}}]}, "no name for 'en'"),
    ],
)
def test_bad_groups_and_names_are_one_line_errors(data, message):
    with pytest.raises(InputError, match=re.escape(message)):
        registry_from_data(data)


def test_the_packaged_registry_groups_every_topic():
    registry = load_registry(TOPICS_FILE)
    assert all(topic.group for topic in registry.topics)
    assert all(len(names) >= 2 for group in registry.groups for names in [group.names])
