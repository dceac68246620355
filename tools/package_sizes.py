"""What each Lambda function ships, from the package ``make package`` built.

``chalice package`` builds one ``deployment.zip`` with everything;
``tools/split_package.py`` cuts one zip per function from it and points each
function's ``CodeUri`` at its own.  This tool reports both: the shared zip by
part, and per function the zip its ``CodeUri`` names (zipped and unzipped
bytes, the distributions in it), into ``bench/results/package_sizes.json``.

    make package && .venv/bin/python tools/package_sizes.py [build/package]
"""
from __future__ import annotations

import json
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.function_imports import handlers  # noqa: E402
from tools.split_package import FUNCTION  # noqa: E402

MB = 1024 * 1024


def parts(zip_path: Path) -> dict[str, tuple[int, int]]:
    """Top-level entry (package, module, or ``*.dist-info`` folded into its package) -> (zipped, unzipped) bytes."""
    sizes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            top = info.filename.split("/", 1)[0]
            if top.endswith(".py"):
                top = top[:-3]
            elif top.endswith((".dist-info", ".libs")):
                top = top.split("-", 1)[0].split(".", 1)[0].lower()
            sizes[top][0] += info.compress_size
            sizes[top][1] += info.file_size
    return {k: (v[0], v[1]) for k, v in sizes.items()}


def function_zips(package_dir: Path) -> dict[str, dict]:
    """Chalice function name -> its logical id, zip, sizes and distributions, as the packaged template points."""
    template = json.loads((package_dir / "sam.json").read_text())
    by_handler = handlers()
    out = {}
    for lid, res in sorted(template["Resources"].items()):
        if res["Type"] != FUNCTION:
            continue
        props = res["Properties"]
        path = package_dir / props["CodeUri"]
        with zipfile.ZipFile(path) as z:
            unzipped = sum(i.file_size for i in z.infolist())
            dists = sorted({n.split("/")[0].removesuffix(".dist-info") for n in z.namelist()
                            if n.split("/")[0].endswith(".dist-info")})
        out[by_handler[props["Handler"].removeprefix("app.")]] = {
            "logical_id": lid, "code_uri": props["CodeUri"], "zipped": path.stat().st_size,
            "unzipped": unzipped, "distributions": dists}
    return out


def table(functions: dict[str, dict]) -> str:
    lines = [f"{'function':22} {'LogicalId':20} {'zipped MB':>9} {'unzipped MB':>11}  distributions"]
    for name, f in sorted(functions.items()):
        dists = ", ".join(d.rsplit("-", 1)[0] for d in f["distributions"])
        lines.append(f"{name:22} {f['logical_id']:20} {f['zipped'] / MB:9.1f} {f['unzipped'] / MB:11.1f}  {dists}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    package_dir = Path(argv[1]) if len(argv) > 1 else ROOT / "build" / "package"
    shared = package_dir / "deployment.zip"
    sizes = parts(shared)
    total = (shared.stat().st_size, sum(u for _, u in sizes.values()))
    print(f"deployment.zip (chalice's, all in one): {total[0] / MB:.1f} MB zipped, {total[1] / MB:.1f} MB unzipped")
    biggest = sorted(sizes.items(), key=lambda kv: -kv[1][1])[:8]
    print("largest parts: " + ", ".join(f"{k} {u / MB:.1f} MB" for k, (_, u) in biggest))
    functions = function_zips(package_dir)
    print(table(functions))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "package_sizes.json").write_text(json.dumps({"zip": {"zipped": total[0], "unzipped": total[1]},
                                                        "parts": sizes, "functions": functions}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
