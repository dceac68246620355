"""What each function really called on the local stack, as ``FUNCTION_ACCESS`` rows.

Run the suite with the local stack recording instead of enforcing
(devstack/iam.py), then print the map ``tools/render_infra.py`` keeps:

    DEVSTACK_IAM=record DEVSTACK_IAM_USAGE=/tmp/iam.jsonl .venv/bin/python -m pytest
    .venv/bin/python tools/iam_usage.py /tmp/iam.jsonl

Resources are named the way ``FUNCTION_ACCESS`` names them: tables and queues
by their setting (``conversations``, ``delivery``), ``files`` for objects of
the files bucket, ``@connections`` for posting to sockets; a queue a
function sends to also needs ``GetQueueUrl`` (add it: a lookup cached by
another function in the same local worker is not seen).  The output is a
starting point for review, not something to paste blindly: a call the suite
never made is missing from it.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def resource_names(stage: str = "dev") -> dict[str, str]:
    from tools.render_infra import _stage_settings

    s = _stage_settings(stage)
    names: dict[str, str] = {}
    for field, value in vars(s).items():
        for suffix in ("_table", "_queue"):
            if field.endswith(suffix) and isinstance(value, str):
                names.setdefault(value + suffix, field[: -len(suffix)])
    names[s.files_bucket + "_bucket"] = "files"
    return names


def key_of(resource: str, names: dict[str, str]) -> str:
    if resource.startswith("arn:aws:dynamodb:"):
        table = resource.split(":table/", 1)[1]
        name, _, index = table.partition("/index/")
        base = names.get(name + "_table", name)
        return f"{base}/index" if index else base
    if resource.startswith("arn:aws:sqs:"):
        name = resource.rsplit(":", 1)[1]
        return "queue:" + names.get(name + "_queue", name)
    if resource.startswith("arn:aws:s3:::"):
        bucket = resource[len("arn:aws:s3:::"):].split("/", 1)[0]
        return "bucket:" + names.get(bucket + "_bucket", bucket)
    if resource.startswith("arn:aws:execute-api:"):
        return "@connections"
    return resource


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else ROOT / ".devstack" / "iam-usage.jsonl"
    names = resource_names()
    usage: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for line in path.read_text().splitlines():
        row = json.loads(line)
        usage[row["function"]][key_of(row["resource"], names)].add(row["action"].split(":", 1)[1])
    for function in sorted(usage):
        print(f"    {function!r}: {{")
        for key in sorted(usage[function]):
            print(f"        {key!r}: {sorted(usage[function][key])!r},")
        print("    },")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
