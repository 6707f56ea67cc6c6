"""Wait until the demo's last event is applied, then print the synced target tables."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

LAST_EVENT = "crm@11"  # the last line of demo/events.jsonl
TIMEOUT_S = 60


def main(database: Path) -> int:
    deadline = time.monotonic() + TIMEOUT_S
    with sqlite3.connect(database, timeout=10) as db:
        while time.monotonic() < deadline:
            try:
                found = db.execute(
                    "SELECT 1 FROM syncd_positions WHERE event_id = ?", (LAST_EVENT,)
                ).fetchone()
            except sqlite3.OperationalError:
                found = None  # the daemon has not created its positions table yet
            if found:
                break
            time.sleep(0.2)
        else:
            print(f"demo: event {LAST_EVENT} was not applied within {TIMEOUT_S} s", file=sys.stderr)
            return 1
        for table in ("dim_customer", "orders", "contact", "syncd_positions"):
            cursor = db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
            columns = [c[0] for c in cursor.description]
            rows = [[("" if v is None else str(v)) for v in row] for row in cursor]
            widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
            print(f"\n{table}:")
            print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
            for row in rows:
                print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
