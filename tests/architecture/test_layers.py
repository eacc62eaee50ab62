"""The import contract of ARCHITECTURE.md, read from the source (every import statement,
including those inside functions and under ``if TYPE_CHECKING:``).

- every module of ``autumn_core`` sits in one layer, and imports only its own layer and the
  layers below it; the import graph has no cycle at all;
- ``autumn_core`` imports no adapter, no driver and no web framework;
- an adapter imports ``autumn_core`` (never its application layer) and no other adapter, but
  the SQL stores import their shared document mapping, ``autumn_sqldoc``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The layers of autumn_core, lowest first (ARCHITECTURE.md draws the same list).
LAYERS: list[tuple[str, set[str]]] = [
    (
        "foundation",
        {
            "autumn_core.errors",
            "autumn_core.results",
            "autumn_core.serialization",
            "autumn_core.values",
            "autumn_core.clock",
            "autumn_core.rules",
            "autumn_core.rules.due",
            "autumn_core.rules.periods",
            "autumn_core.provider_events",
            "autumn_core.controls",
            "autumn_core.control_state",
            "autumn_core.outbound",
            "autumn_core.signing",
            "autumn_core.subscribers",
        },
    ),
    (
        "catalog",
        {"autumn_core.catalog", "autumn_core.catalog_records", "autumn_core.catalog_toml"},
    ),
    ("model", {"autumn_core.model"}),
    (
        "rules and ports",
        {
            "autumn_core.rules.rows",
            "autumn_core.rules.pricing",
            "autumn_core.rules.classify",
            "autumn_core.rules.deduction",
            "autumn_core.rules.balance_view",
            "autumn_core.rules.order",
            "autumn_core.rules.limits",
            "autumn_core.rules.aggregate",
            "autumn_core.changes",
            "autumn_core.ports",
        },
    ),
    (
        "unit of work",
        {
            "autumn_core.app",
            "autumn_core.app.context",
            "autumn_core.app.unit",
            "autumn_core.app.product_changes",
            "autumn_core.app.invoice_events",
            "autumn_core.app.topup_triggers",
            "autumn_core.app.views",
            "autumn_core.app.trials",
            "autumn_core.app.limits",
            "autumn_core.app.holds",
        },
    ),
    (
        "services",
        {
            "autumn_core.app.billing",
            "autumn_core.app.billing.lines",
            "autumn_core.app.billing.credits",
            "autumn_core.app.billing.charging",
            "autumn_core.app.billing.saga",
            "autumn_core.app.provisioning",
            "autumn_core.app.seats",
            "autumn_core.app.signals",
        },
    ),
    (
        "lifecycle",
        {
            "autumn_core.app.renewals",
            "autumn_core.app.lazy",
            "autumn_core.app.customers",
            "autumn_core.app.trial_notices",
        },
    ),
    (
        "use cases",
        {
            "autumn_core.app.usage",
            "autumn_core.app.balances",
            "autumn_core.app.entities",
            "autumn_core.app.cancel",
            "autumn_core.app.attach",
            "autumn_core.app.attach.args",
            "autumn_core.app.attach.planning",
            "autumn_core.app.attach.execution",
            "autumn_core.app.attach.completion",
            "autumn_core.app.attach.preview",
            "autumn_core.app.events",
            "autumn_core.app.outbox",
            "autumn_core.app.topups",
            "autumn_core.app.controls",
            "autumn_core.app.locks",
        },
    ),
    (
        "facade",
        {
            "autumn_core",
            "autumn_core.aio",
            "autumn_core.facade",
            "autumn_core.facade_lifecycle",
            "autumn_core.facade_parts",
            "autumn_core.facade_history",
            "autumn_core.facade_webhooks",
            "autumn_core.testing",
            "autumn_core.testing.contract",
            "autumn_core.testing.contract._base",
            "autumn_core.testing.contract._customers",
            "autumn_core.testing.contract._outbox",
            "autumn_core.testing.contract._customer_queries",
            "autumn_core.testing.contract._records",
            "autumn_core.testing.contract._transactions",
            "autumn_core.testing.contract.builders",
            "autumn_core.testing.gateway_contract",
            "autumn_core.testing.gateway_contract._suite",
            "autumn_core.testing.invariants",
            "autumn_core.testing.machine",
            "autumn_core.testing.machine_rules",
            "autumn_core.testing.plugin",
            "autumn_core.testing.runner",
            "autumn_core.testing.stores",
            "autumn_core.testing.transcript",
        },
    ),
]

ADAPTERS = (
    "autumn_memory",
    "autumn_sqldoc",
    "autumn_sqlite",
    "autumn_postgres",
    "autumn_stripe",
    "autumn_cli",
    "autumn_wire",
)

#: Third-party distributions the core may use (everything else it imports is the stdlib);
#: the testing kit also gives users Hypothesis strategies.
CORE_LIBRARIES = {"attrs", "cattrs", "tomli_w"}
TESTING_KIT_LIBRARIES = {"hypothesis", "pytest"}  # pytest: the shipped contract suites

#: What an adapter may import of the core: everything but the application layer.
ADAPTER_FORBIDDEN = ("autumn_core.app", "autumn_core.facade")

#: Known cycles, each with the work that removes it (none left).
KNOWN_CYCLES: set[str] = set()

#: Known exceptions, each with the work that removes it.
KNOWN: set[tuple[str, str]] = set()

#: Adapters other adapters may import, and which: the SQL stores' shared document mapping.
SHARED = {"autumn_sqldoc": {"autumn_sqlite", "autumn_postgres"}}


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    found = {module_name(p, ROOT): p for p in (ROOT / "autumn_core").rglob("*.py")}
    for p in (ROOT / "adapters").rglob("*.py"):
        found[module_name(p, ROOT / "adapters")] = p
    return found


MODULES = sources()


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """Every module ``module`` imports, with its line."""
    path = MODULES[module]
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_pkg else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # ``from pkg import sub`` depends on the submodule, not on what ``pkg`` defines.
                yield (sub if sub in MODULES else base), node.lineno


def internal(name: str) -> str | None:
    """The project module ``name`` refers to (a module, or the module defining a name)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def graph() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module in MODULES:
        out[module] = {
            target
            for name, _ in imports_of(module)
            if (target := internal(name)) is not None and target != module
        }
    return out


def layer_of(module: str) -> int | None:
    for rank, (_, members) in enumerate(LAYERS):
        if module in members:
            return rank
    return None


CORE = sorted(m for m in MODULES if m == "autumn_core" or m.startswith("autumn_core."))


def test_every_core_module_has_a_layer() -> None:
    unplaced = [m for m in CORE if layer_of(m) is None]
    assert unplaced == [], "place these modules in a layer (here and in ARCHITECTURE.md)"


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_imports_only_its_layer_and_those_below(module: str) -> None:
    rank = layer_of(module)
    assert rank is not None
    upward = []
    for name, line in imports_of(module):
        target = internal(name)
        if target is None or target == module or not target.startswith("autumn_core"):
            continue
        target_rank = layer_of(target)
        if target_rank is None or target_rank > rank:
            upward.append(f"line {line}: {target} ({LAYERS[target_rank or 0][0]})")
    assert upward == [], f"{module} ({LAYERS[rank][0]}) imports upward"


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert {" -> ".join(c) for c in cycles} - KNOWN_CYCLES == set()


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_no_adapter_and_no_driver(module: str) -> None:
    stdlib = sys.stdlib_module_names
    foreign = []
    for name, line in imports_of(module):
        top = name.split(".")[0]
        if top in ("autumn_core", "__future__") or top in stdlib or top in CORE_LIBRARIES:
            continue
        if module.startswith("autumn_core.testing") and top in TESTING_KIT_LIBRARIES:
            continue
        foreign.append(f"line {line}: {name}")
    assert foreign == []


ADAPTER_MODULES = sorted(m for m in MODULES if m.split(".")[0] in ADAPTERS)


@pytest.mark.parametrize("module", ADAPTER_MODULES)
def test_an_adapter_imports_the_core_and_itself_only(module: str) -> None:
    own = module.split(".")[0]
    wrong = []
    for name, line in imports_of(module):
        target = internal(name)
        if target is None:
            continue
        top = target.split(".")[0]
        if top in ADAPTERS and top != own and own not in SHARED.get(top, ()):
            wrong.append(f"line {line}: {target} (another adapter)")
        elif target.startswith(ADAPTER_FORBIDDEN) and (module, target) not in KNOWN:
            wrong.append(f"line {line}: {target} (the core's application layer)")
        elif target.startswith("autumn_core.rules") and (module, target) not in KNOWN:
            wrong.append(f"line {line}: {target} (a core rule)")
    assert wrong == []
