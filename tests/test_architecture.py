"""The import rules of docs/architecture.md, checked by parsing each module with `ast` (nothing is
imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOMAIN = ("rating", "ledger", "payments", "holders", "notify", "callcontrol")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, name: str, is_package: bool = False) -> set[str]:
    """Every module `source` imports (relative imports resolved against module `name`), with each `from
    X import y` also counted as X.y, since y may be a submodule."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def modules(*folders: str) -> dict[str, set[str]]:
    out = {}
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            name = module_name(path)
            out[name] = imported(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
    assert out, f"no modules under {folders}"
    return out


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(found: dict[str, set[str]], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{mod} imports {imp}" for mod, imps in found.items() for imp in imps
                  if any(within(imp, f) for f in forbidden))


@pytest.mark.parametrize("package", ["rating", "ledger"])
def test_rating_and_ledger_import_none_of_the_others(package: str) -> None:
    others = tuple(p for p in DOMAIN if p != package)
    assert violations(modules(package), others) == []


def test_payments_never_imports_callcontrol() -> None:
    assert violations(modules("payments"), ("callcontrol", "holders")) == []


def test_holders_never_import_the_edges() -> None:
    assert violations(modules("holders"), ("callcontrol", "web")) == []


def test_notify_never_imports_the_edges() -> None:
    assert violations(modules("notify"), ("callcontrol", "web")) == []


def test_callcontrol_and_web_never_import_each_other() -> None:
    """Two edges. The one exception is by name, not by import: callcontrol/cli.py (the process entry
    point) lists "web.cli" in COMMAND_MODULES, which this parser does not count (docs/architecture.md)."""
    assert violations(modules("web"), ("callcontrol",)) == []
    assert violations(modules("callcontrol"), ("web",)) == []
    assert '"web.cli"' in (REPO / "callcontrol" / "cli.py").read_text(encoding="utf-8")


def test_the_asterisk_edge_knows_nothing_of_billing() -> None:
    billing = ("ledger", "rating", "payments", "callcontrol.flows", "callcontrol.deposit")
    assert violations(modules("callcontrol/asterisk"), billing) == []


def test_the_roster_knows_nothing_of_calls_or_asterisk() -> None:
    edges = ("callcontrol.asterisk", "callcontrol.flows", "callcontrol.deposit", "callcontrol.sim",
             "callcontrol.controller", "payments", "holders")
    assert violations(modules("callcontrol/roster"), edges) == []
    assert violations({"callcontrol.policy": modules("callcontrol")["callcontrol.policy"]},
                      ("callcontrol.roster",)) == []     # policy stays pure: the controller applies SQL


def test_production_modules_do_not_import_the_simulator() -> None:
    found = {name: imps for name, imps in modules("callcontrol").items()
             if not within(name, "callcontrol.sim") and name != "callcontrol.commands"}   # the demo's home
    assert {"callcontrol.controller", "callcontrol.flows.screen", "callcontrol.deposit.line"} <= set(found)
    assert violations(found, ("callcontrol.sim",)) == []


def test_the_checker_sees_every_form_of_import() -> None:
    src = ("import ledger.core\nfrom callcontrol import sim\nfrom . import cards\nfrom ..flows import x\n"
           "def f():\n    from rating.numbers import lookup\n")
    found = imported(src, "callcontrol.deposit.line")
    assert violations({"m": found}, ("ledger",)) == ["m imports ledger.core"]
    assert violations({"m": found}, ("callcontrol.sim",)) == ["m imports callcontrol.sim"]
    assert violations({"m": found}, ("rating",)) == ["m imports rating.numbers",
                                                    "m imports rating.numbers.lookup"]
    assert {"callcontrol.deposit.cards", "callcontrol.flows.x"} <= found
    assert "payments.cards" in imported("from . import cards\n", "payments", is_package=True)
