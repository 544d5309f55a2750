"""The direction imports may take between the project's packages, held by a test (CI runs this module as
its own step, "layers", before the suite).

Top to bottom (ARCHITECTURE): front ends -> core -> domain -> base. A package may import its own layer's
packages only where ``ALONGSIDE`` says so, and any package of a lower layer; never one above. Every import
counts: at module level, inside a function (lazy) and under ``TYPE_CHECKING``. ``mailer.testing`` (test
tools: an SES sink, an SNS signer) sits beside the domain and is imported by tests, benches and the demo's
front end only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.paths import PROJECT_ROOT

FRONT = ("mailer.cli", "mailer.web", "mailer.worker")
CORE = ("mailer.services",)
DOMAIN = ("mailer.feedback", "mailer.sending", "mailer.rendering", "mailer.accounts")
BASE = (
    "mailer.observability",  # counters the send path and the webhook increment, logs, a worker's port
    "mailer.broker",
    "mailer.database",
    "mailer.settings",
    "mailer.settings_doc",
    "mailer.urls",
    "mailer.topics",
    "mailer.errors",
    "mailer.samples",
    "subscribers",
)
TOOLS = ("mailer.testing",)
LAYERS = {name: rank for rank, layer in enumerate((FRONT, CORE, DOMAIN, BASE)) for name in layer}
LAYERS |= {name: LAYERS["mailer.feedback"] for name in TOOLS}

# imports within one layer, each with its reason; everything else within a layer is a sideways edge
ALONGSIDE = {
    ("mailer.cli", "mailer.web"),  # `newsletter serve` starts the web app
    ("mailer.cli", "mailer.testing"),  # `newsletter demo` signs its SNS notifications with the test signer
    ("mailer.feedback", "mailer.sending"),  # a bounce marks the ledger row of the message it answers
    ("mailer.sending", "mailer.rendering"),  # the ledger's fill renders segments; messages fill them
    ("mailer.testing", "mailer.feedback"),  # the signer signs what the verifier checks
}
# the base layer's own order: each may import only those listed after it (so no cycle can form)
BASE_ORDER = (
    "mailer.settings_doc",
    "mailer.database",
    "mailer.broker",
    "mailer.observability",
    "mailer.urls",
    "mailer.topics",
    "mailer.settings",
    "mailer.errors",
    "mailer.samples",
    "subscribers",
)
IMPORTERS_OF_TOOLS = {"mailer.cli.send_cmds"}  # the demo's front end; besides tests and benches


def unit(module: str) -> str | None:
    """The package (or root module) a module belongs to; None outside the project."""
    parts = module.split(".")
    if parts[0] == "subscribers":
        return "subscribers"
    if parts[0] != "mailer" or len(parts) == 1:
        return None
    return f"mailer.{parts[1]}"


@dataclass(frozen=True)
class Edge:
    importer: str  # module
    imported: str  # module
    where: str  # path:line

    @property
    def units(self) -> tuple[str | None, str | None]:
        return unit(self.importer), unit(self.imported)


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Iterator[Edge]:
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from mailer import broker` imports the module mailer.broker
            targets = [base] if unit(base) else [f"{base}.{alias.name}" for alias in node.names]
        where = f"{path.relative_to(PROJECT_ROOT)}:{getattr(node, 'lineno', 0)}"
        yield from (Edge(importer, target, where) for target in targets)


def project_edges() -> list[Edge]:
    files = [
        *sorted((PROJECT_ROOT / "mailer").rglob("*.py")),
        *sorted((PROJECT_ROOT / "subscribers").rglob("*.py")),
    ]
    return [edge for path in files for edge in imports_of(path) if edge.units[1] is not None]


def violation(edge: Edge) -> str | None:
    """Why this import goes against the layers, or None."""
    source, target = edge.units
    if source is None or target is None or source == target:
        return None
    if source not in LAYERS or target not in LAYERS:
        return f"{source if source not in LAYERS else target} has no layer: add it to test_layers.py"
    if target in TOOLS and edge.importer not in IMPORTERS_OF_TOOLS:
        return f"{target} is a test tool: only tests, benches and {sorted(IMPORTERS_OF_TOOLS)} import it"
    if LAYERS[target] < LAYERS[source]:
        return f"{source} is below {target}: a lower layer never imports a higher one"
    if LAYERS[target] == LAYERS[source]:
        if source in BASE_ORDER and target in BASE_ORDER:
            if BASE_ORDER.index(target) < BASE_ORDER.index(source):
                return f"{source} comes after {target} in the base layer's order"
        elif (source, target) not in ALONGSIDE:
            return f"{source} and {target} are in one layer and {source} -> {target} is not in ALONGSIDE"
    return None


def test_every_project_package_has_a_layer() -> None:
    units = {
        unit(module_name(p)) for top in ("mailer", "subscribers") for p in (PROJECT_ROOT / top).rglob("*.py")
    }
    assert units - {None} <= set(LAYERS), sorted(u for u in units if u and u not in LAYERS)


def test_imports_follow_the_layers() -> None:
    bad = [
        f"{e.where}: {e.importer} imports {e.imported}: {why}"
        for e in project_edges()
        if (why := violation(e))
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("importer", "imported", "wrong"),
    [
        ("mailer.services.env", "mailer.worker.tasks", True),  # the core reaching up to a front end
        ("mailer.sending.sender", "mailer.services.lifecycle", True),
        ("mailer.observability.metrics", "mailer.services.metrics", True),
        ("mailer.services.demo", "mailer.testing.sns_signer", True),  # a test tool in the core
        ("mailer.rendering.render", "mailer.sending.message", True),  # sideways, not allowed
        ("mailer.web.app", "mailer.worker", True),
        ("mailer.settings", "mailer.database", True),  # against the base order
        ("subscribers.store", "mailer.errors", True),
        ("mailer.cli.send_cmds", "mailer.testing.sns_signer", False),
        ("mailer.worker.tasks", "mailer.services.lifecycle", False),
        ("mailer.feedback.apply", "mailer.sending.models", False),
        ("mailer.database", "subscribers.db", False),
    ],
)
def test_the_rule_tells_a_back_edge_from_a_good_one(importer: str, imported: str, wrong: bool) -> None:
    assert (violation(Edge(importer, imported, "example")) is not None) is wrong


def test_relative_and_from_imports_are_resolved() -> None:
    edges = {e.imported for e in imports_of(PROJECT_ROOT / "mailer" / "worker" / "tasks.py")}
    assert {"mailer.broker", "mailer.services", "mailer.errors"} <= edges
