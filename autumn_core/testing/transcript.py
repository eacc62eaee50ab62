"""The calls a machine run made, as Python source a user can paste into a test.

Every engine call of a run is recorded as one line (``billing.attach("c0", "pro")``); a call
that raised is recorded inside ``with pytest.raises(...)``. Reads the machine makes only to
check its invariants are not recorded: they change nothing a test could see.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs

from autumn_core.results import ByEmail, CustomerData


def lit(value: Any) -> str:
    """``value`` as a Python literal (strings double-quoted, Decimals as ``Decimal("1.5")``)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return repr(value)
    if isinstance(value, Decimal):
        return f'Decimal("{value}")'
    if isinstance(value, ByEmail):
        return f"ByEmail({lit(value.email)})"
    if isinstance(value, CustomerData):
        fields = {a.name: getattr(value, a.name) for a in attrs.fields(CustomerData)}
        return f"CustomerData({kwargs({k: v for k, v in fields.items() if v is not None})})"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{lit(k)}: {lit(v)}" for k, v in value.items()) + "}"
    if isinstance(value, datetime):
        return f"datetime.fromisoformat({lit(value.isoformat())})"
    return repr(value)


def kwargs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={lit(v)}" for k, v in values.items())


def call(fn: str, *args: Any, **kw: Any) -> str:
    """``billing.<fn>(args, keyword=value)``, leaving out keywords that are None."""
    parts = [lit(a) for a in args]
    parts += [f"{k}={lit(v)}" for k, v in kw.items() if v is not None]
    return f"billing.{fn}({', '.join(parts)})"


def advance(delta: timedelta) -> str:
    days, seconds = delta.days, delta.seconds
    parts = []
    if days:
        parts.append(f"days={days}")
    if seconds or not parts:
        parts.append(f"seconds={seconds}")
    return f"clock.advance({', '.join(parts)})"


@attrs.define
class Line:
    source: str
    #: The class name of the error the call raised, if it raised.
    raised: str | None = None


@attrs.define
class Transcript:
    lines: list[Line] = attrs.field(factory=list)

    def add(self, source: str) -> Line:
        line = Line(source)
        self.lines.append(line)
        return line

    def __len__(self) -> int:
        return len(self.lines)

    def body(self, indent: str = "    ") -> list[str]:
        out: list[str] = []
        for line in self.lines:
            if line.raised is None:
                out.append(indent + line.source)
            else:
                out.append(f"{indent}with pytest.raises({line.raised}):")
                out.append(f"{indent}    {line.source}")
        return out

    def errors(self) -> list[str]:
        return sorted({line.raised for line in self.lines if line.raised is not None})

    def as_test(self, *, start: datetime, gateway: str | None, problem: str) -> str:
        """A complete pytest function reproducing the run on the in-memory store."""
        imports = ["CustomerData", "ByEmail", *self.errors()]
        used = [
            name
            for name in imports
            if any(name + "(" in line.source or line.raised == name for line in self.lines)
        ]
        head = [
            "from datetime import datetime",
            "from decimal import Decimal",
            "",
            "import pytest",
            "",
        ]
        if used:
            head.append(f"from autumn_core import {', '.join(sorted(set(used)))}")
        head.append("from autumn_core.testing import clock_of, engine")
        if gateway and gateway.startswith("MemoryGateway("):
            head.append("from autumn_memory import MemoryGateway")
        head += ["", "", "def test_counterexample():"]
        head.append(f"    # {problem}".replace("\n", "\n    # "))
        gw = f", gateway={gateway}" if gateway else ""
        head.append(f"    billing = engine(catalog, start={lit(start)}{gw})  # your catalog")
        head.append("    clock = clock_of(billing)")
        return "\n".join(head + self.body())
