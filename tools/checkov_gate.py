"""Fail on checkov findings that ``infra/checkov-suppressions.yaml`` does not accept with a reason.

Why not checkov's own ``--skip-check``: that skips a check for every
resource, silently, with no reason on record.  Here each accepted finding
names the resources it covers (glob on checkov's ``Type.LogicalId``) and
says why, so a new resource that trips the same check still fails.

Runs with the checkov virtualenv's Python (it has PyYAML)::

    checkov ... --soft-fail --output json > build/checkov.json
    python tools/checkov_gate.py build/checkov.json infra/checkov-suppressions.yaml
"""
from __future__ import annotations

import json
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import yaml


def load_suppressions(path: Path) -> list[dict]:
    entries = yaml.safe_load(path.read_text()) or []
    for entry in entries:
        if not entry.get("id") or not str(entry.get("reason", "")).strip():
            raise SystemExit(f"{path}: every entry needs an id and a reason: {entry!r}")
    return entries


def main(report_path: str, suppressions_path: str) -> int:
    try:
        report = json.loads(Path(report_path).read_text())
    except (OSError, ValueError) as exc:
        print(f"checkov_gate: no usable checkov report ({exc})", file=sys.stderr)
        return 1
    reports = report if isinstance(report, list) else [report]
    if not all("summary" in r for r in reports):
        print("checkov_gate: checkov report has no summary", file=sys.stderr)
        return 1
    suppressions = load_suppressions(Path(suppressions_path))
    used: set[int] = set()
    unaccepted = []
    passed = parse_errors = 0
    for r in reports:
        passed += r["summary"].get("passed", 0)
        parse_errors += r["summary"].get("parsing_errors", 0)
        for finding in r.get("results", {}).get("failed_checks", []):
            match = next((i for i, s in enumerate(suppressions) if s["id"] == finding["check_id"]
                          and any(fnmatchcase(finding["resource"], g) for g in s.get("resources", ["*"]))),
                         None)
            if match is None:
                unaccepted.append(finding)
            else:
                used.add(match)
    for i, s in enumerate(suppressions):
        if i not in used:
            print(f"checkov_gate: note: suppression {s['id']} {s.get('resources', ['*'])} matched nothing")
    for f in unaccepted:
        print(f"checkov_gate: FAILED {f['check_id']} {f['resource']}: {f['check_name']}", file=sys.stderr)
    accepted = sum(1 for r in reports for _ in r.get("results", {}).get("failed_checks", [])) - len(unaccepted)
    print(f"checkov_gate: {passed} passed, {accepted} accepted with a reason, "
          f"{len(unaccepted)} unaccepted, {parse_errors} parsing errors")
    return 1 if unaccepted or parse_errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
