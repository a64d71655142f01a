"""Scan a LeRobot dataset for problems and write a cleaned copy (labvla-data).

    python examples/clean_dataset.py --src data/pick_up --dst data/pick_up_clean

`scan` writes a report (and prints its summary); `clean` copies the dataset without the episodes the
report flags as errors. The source is never modified.
"""

import argparse
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--dst", type=Path, required=True)
    args = p.parse_args()
    report = args.dst.with_name(args.dst.name + "_scan.json")
    for cmd in ([BIN / "labvla-data", "scan", "--root", args.src, "--out", report],
                [BIN / "labvla-data", "clean", "--src", args.src, "--dst", args.dst, "--report", report, "--overwrite"]):
        if rc := subprocess.run([str(c) for c in cmd], check=False).returncode:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
