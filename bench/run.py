"""Run every benchmark and rewrite BENCHMARKS.md (``make bench``)."""
import datetime
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_convert  # noqa: E402
from common import ROOT, machine  # noqa: E402


def main():
    work = os.path.join(ROOT, "demo")
    weights = os.path.join(work, "xception_seed0.h5")
    if not os.path.exists(weights):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_keras_reference.py"),
                        "-o", weights], check=True)
    sections = [("1. Conversion", bench_convert.run(weights)[0])]
    text = ["# Benchmarks", "",
            "Written by `make bench` (`bench/run.py`) on %s." % datetime.date.today(), "",
            "Machine: " + machine(), ""]
    for title, body in sections:
        text += ["## " + title, "", body, ""]
    with open(os.path.join(ROOT, "BENCHMARKS.md.tmp"), "w") as f:
        f.write("\n".join(text))
    os.replace(os.path.join(ROOT, "BENCHMARKS.md.tmp"), os.path.join(ROOT, "BENCHMARKS.md"))
    print("\n".join(text))


if __name__ == "__main__":
    main()
