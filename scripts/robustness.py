#!/usr/bin/env python
"""Long robustness runs (fuzzing, kills, full disks) and ROBUSTNESS.md (``make robustness``)."""
import argparse
import datetime
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))   # the harness modules beside it

import kill_harness  # noqa: E402  (beside this script)
import robustness_harness as robustness  # noqa: E402
from xception_mx.atomic import write_text  # noqa: E402
from xception_mx.keras_side import FORMATS, SUFFIX  # noqa: E402

SERVING_HEADER = "## Serving (Multi Model Server)"    # scripts/serving_faults.py's section


def kill_training_runs(work, weights, kills, seed):
    """Fine-tuning killed ``kills`` times at random moments, then resumed."""
    from shapes_dataset import write_shapes_dataset
    data = os.path.join(work, "shapes")
    write_shapes_dataset(data, per_class=8, seed=2, size=(80, 80))
    base = os.path.join(work, "x71")
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "keras2mxnet"), weights,
                    "-o", base, "--input-shape", "71", "71"], check=True, capture_output=True)
    args = [data, "--pretrained", base, "--val-split", "0.25", "--input-shape", "71", "71",
            "--epochs", "3", "--batch-size", "8", "--workers", "2", "--min-crop", "0.5",
            "--optimizer", "adam", "--lr", "0.001", "--warmup-epochs", "1"]
    return kill_harness.kill_training(args, os.path.join(work, "killed"), kills, seed,
                                    os.path.join(work, "reference"))


def phases(counts):
    """``3 in checkpoint:params-written, 1 in ...`` for a table cell."""
    found = counts.get("phases", {})
    return ", ".join("%d after `%s`" % (n, name) if ":" in name else "%d %s" % (n, name)
                     for name, n in sorted(found.items(), key=lambda item: -item[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fuzz-cases", type=int, default=60)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--training-kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="xception-robustness-")
    files = {}
    for fmt in FORMATS:
        files[fmt] = os.path.join(work, "top_%s%s" % (fmt, SUFFIX[fmt]))
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_keras_reference.py"),
                        "--format", fmt, "-o", files[fmt]], check=True, capture_output=True)
    notop = os.path.join(work, "notop.h5")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_keras_reference.py"),
                    "--notop", "-o", notop, "--seed", "1"], check=True, capture_output=True)
    fuzz, failures = robustness.fuzz_converter(list(files.values()), args.fuzz_cases,
                                               args.seed, work)
    kills = kill_harness.kill_conversions(files["legacy-h5"], notop, os.path.join(work, "k"),
                                        args.kills, args.seed)
    training = kill_training_runs(work, files["legacy-h5"], args.training_kills, args.seed)
    disk = robustness.full_disk_conversions(files["weights-h5"], os.path.join(work, "d"),
                                            [1 << 20, 8 << 20, 40 << 20, 80 << 20])
    lines = [
        "# Robustness", "",
        "Written by `make robustness` (`scripts/robustness.py --fuzz-cases %d --kills %d "
        "--training-kills %d --seed %d`) on %s. The test suite runs short versions of the same "
        "harness (`tests/robustness/test_robustness.py`, `scripts/robustness_harness.py`) and "
        "kills at every named point (`tests/robustness/test_kill_points.py`). Random kills are timed "
        "from a traced run (`XCEPTION_MX_TRACE`: the time each named point of "
        "`xception_mx/faults.py` is reached); a killed run's trace names the last point it "
        "passed, which is the phase given in brackets." % (
            args.fuzz_cases, args.kills, args.training_kills, args.seed, datetime.date.today()),
        "",
        "| what | cases | outcome | lost or corrupted |", "|---|---|---|---|",
        "| damaged Keras files (truncated, overwritten bytes, zeroed blocks, spliced; all four "
        "formats) fed to `keras2mxnet` | %d | %d clean errors (exit 2, one line, no output), "
        "%d still valid and converted | %d |" % (
            fuzz.get("cases", 0), fuzz.get("clean_errors", 0), fuzz.get("converted", 0),
            fuzz.get("failures", 0)),
        "| SIGKILL at a random moment of a conversion over an existing checkpoint, drawn over "
        "the %.1f s a traced run lasted from the start of its write, counted from when the "
        "killed run starts writing | %d kills (%s) | %d "
        "left the previous checkpoint, %d the new one | %d |" % (
            kills["measured"]["seconds"] - kills["measured"]["write_starts"],
            kills.get("kills", 0), phases(kills), kills.get("old_intact", 0),
            kills.get("new_complete", 0), kills.get("corrupted", 0)),
        "| SIGKILL at a random moment of a fine-tuning run (3 epochs at 71x71), drawn over the "
        "%.1f s a traced run lasted after its first checkpoint, counted from when the killed "
        "run writes its own; then `--resume` | %d kills (%s; %d with a checkpoint written) | "
        "%d resumed at the epoch after the last complete "
        "checkpoint; %d ended with an uninterrupted run's parameters (within 1e-5) | %d |" % (
            training["measured"]["seconds"] - training["measured"]["first_checkpoint"],
            training.get("kills", 0), phases(training),
            training.get("after_first_checkpoint", 0),
            training.get("resumed_after_last_checkpoint", 0), training.get("identical", 0),
            training.get("kills", 0) - min(training.get("identical", 0),
                                           training.get("resumed_after_last_checkpoint", 0))),
        "| full disk (`ulimit -f` at 1, 8, 40, 80 MB) during a conversion over an existing "
        "checkpoint | %d | %d clean errors with the previous files intact, %d completed | %d |"
        % (disk.get("cases", 0), disk.get("clean_errors_previous_intact", 0),
           disk.get("completed", 0), disk.get("lost_or_unclear", 0)),
        "",
        "Also covered by tests (one case each): datasets claiming 10^9 values, object and "
        "reference dtypes, NaN/Inf weights (warning naming the layer, error with `--strict`; "
        "the converted checkpoint refused by predict, quantize and fine-tuning, naming the "
        "parameter), a fine-tuning that diverges (stops at the batch, writes nothing of the "
        "epoch), "
        "a zip bomb and path-traversal members in `.keras` archives, truncated/garbage/mismatched "
        "`.params`, `-symbol.json` and `-meta.json` given to `xception-predict` and "
        "`xception-parity`, SIGKILL while a training checkpoint is written (`--resume` "
        "continues from the last complete epoch), two conversions to one prefix at once.",
        ""]
    if failures:
        lines += ["Failures:", ""] + ["- case %s (%s of %s): %s" % f for f in failures] + [""]
    path = os.path.join(ROOT, "ROBUSTNESS.md")
    serving = ("", "", "")
    if os.path.exists(path):
        with open(path) as f:          # the serving section is serving_faults.py's
            serving = f.read().partition(SERVING_HEADER)
    write_text(path, "\n".join(lines) + ("\n" + "".join(serving[1:]) if serving[1] else ""))
    print("\n".join(lines))
    return 1 if failures or kills.get("corrupted") or disk.get("lost_or_unclear") or \
        min(training.get("identical", 0), training.get("resumed_after_last_checkpoint", 0)) \
        < training.get("kills", 0) else 0


if __name__ == "__main__":
    sys.exit(main())
