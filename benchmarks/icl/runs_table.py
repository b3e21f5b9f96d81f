"""The README's runs table: mean, sd (numpy, ddof 0) and per-run scores of every row and condition over demo records.

    python benchmarks/icl/runs_table.py NAME "WHAT" RECORD [RECORD ...]

RECORDs are folders under benchmarks/results/demo/ (report.json and seen_report.json of one `afl demo` each, in seed
order); writes benchmarks/results/demo/runs_table_NAME.json as {what, records, table} (`demo_verdict.runs_table`).
Wrote runs_table_v3.json (opt-s0..2) and runs_table_v3_free.json (opt-free-s0..2).
"""

import json
import sys
from pathlib import Path

from audioflamingo_lab.demo_verdict import runs_table

RESULTS = Path(__file__).parents[1] / "results" / "demo"
name, what, records = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = (("balanced", 1), ("rag", 1), ("rag", 4), ("rag", 8), ("none", 0))
table = runs_table([RESULTS / r for r in records], rows=rows)
out = RESULTS / f"runs_table_{name}.json"
out.write_text(json.dumps(dict(what=what, records=records, table=table), indent=1))
for row, conditions in table.items():
    print(row, {c: round(m, 3) for c, (m, s, _) in conditions.items()})
print("wrote", out)
