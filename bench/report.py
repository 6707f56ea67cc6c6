"""The benchmark's output: a table on stdout and the same figures, with machine facts, as JSON."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.services import Broker


@dataclass(frozen=True)
class Metric:
    key: str  # stable name in the JSON
    section: str  # the heading it is shown under
    label: str  # what the table shows
    value: float | str | None  # a string: not a number (e.g. "not implemented")
    unit: str
    note: str = ""


def render_table(metrics: list[Metric], sections: list[str]) -> str:
    """Metrics under their section headings, sections in the order given, then the rest."""
    rows = [(f"  {m.label}", _shown(m.value), m.unit) for m in metrics]
    widths = [max(len(row[i]) for row in [("metric", "value", "unit"), *rows]) for i in range(3)]

    def line(label: str, value: str, unit: str) -> str:
        return f"{label:<{widths[0]}}  {value:>{widths[1]}}  {unit}".rstrip()

    lines = [line("metric", "value", "unit"), "-" * (sum(widths) + 4)]
    for section in dict.fromkeys(sections + [m.section for m in metrics]):
        members = [row for m, row in zip(metrics, rows, strict=True) if m.section == section]
        if members:
            lines += [section, *(line(*row) for row in members)]
    return "\n".join(lines)


def _shown(value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def write_json(
    path: Path,
    metrics: list[Metric],
    machine: dict[str, Any],
    settings: dict[str, Any],
    details: dict[str, Any],
) -> None:
    """The table's figures by key, with the machine, the settings and the phases' details."""
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": settings,
        "details": details,
        "metrics": {
            m.key: {k: _finite(v) for k, v in asdict(m).items() if k != "key"} for m in metrics
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    return str(value)


def _finite(value: Any) -> Any:
    """NaN is not JSON: it becomes null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def machine_facts(broker: Broker, postgres_url: str) -> dict[str, Any]:
    """What the figures depend on: CPUs, memory, kernel, and every component's version."""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "activemq": _activemq_version(broker),
        "java": _first_line(["java", "-version"]),
        "postgresql": _postgres_version(postgres_url),
        "packages": {
            name: _version(name) for name in ("stomp.py", "SQLAlchemy", "psycopg2-binary")
        },
    }


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor()


def _activemq_version(broker: Broker) -> str:
    """From the broker's own start-up line; else what dpkg installed."""
    if broker.dir is not None:
        log = broker.dir / "data" / "activemq.log"
        if log.is_file():
            match = re.search(r"Apache ActiveMQ (\S+)", log.read_text(errors="replace"))
            if match:
                return match.group(1)
    return _first_line(["dpkg-query", "-W", "-f", "${Version}", "activemq"]) or "unknown"


def _postgres_version(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SHOW server_version").scalar_one())
    finally:
        engine.dispose()


def _first_line(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "unknown"
    output = (result.stdout or result.stderr).strip()
    return output.splitlines()[0] if output else "unknown"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
