"""Compares the accuracy columns of two bench reports' results.csv, row by row.

    python docs/diagnostics/compare_results.py NEW/results.csv docs/quick/results.csv

Prints the rows of each file and every (task, row, column) whose values differ; exits 1 if any
differ or a row is missing.
"""

import csv
import sys


def rows(path: str) -> dict[tuple[str, str], dict[str, str]]:
    with open(path) as file:
        return {(row["task"], row["row"]): row for row in csv.DictReader(file)}


new, published = rows(sys.argv[1]), rows(sys.argv[2])
columns = [c for c in next(iter(published.values())) if "accuracy" in c]
missing = sorted(set(published) ^ set(new))
differences = [
    (key, column, new[key][column], published[key][column])
    for key in sorted(set(new) & set(published))
    for column in columns
    if new[key][column] != published[key][column]
]
print(f"{len(new)} and {len(published)} rows; columns: {', '.join(columns)}")
print(f"rows in one file only: {missing}")
print(f"differences: {differences}")
sys.exit(1 if missing or differences else 0)
