"""Every output path is checked before the work starts: a report that names a folder, a
results folder that names a file, a path under a file or a folder that cannot be written is
refused in one line (exit 2) before any checkpoint, model or data is opened (the commands are
given checkpoints and data that do not exist: the refusal names the output, not them), and
nothing is left behind.  That the writers make missing parent folders is shown where the
commands succeed (tests/evaluation/test_evaluate.py, tests/validation/test_parity_cli.py)."""
import os

import pytest

from conftest import assert_bad_input, run_tool


@pytest.fixture
def places(tmp_path):
    """A folder and a file."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("not a folder\n")
    return tmp_path


def cases(places):
    folder, file = places / "folder", places / "file.txt"
    nowhere = ("--keras", places / "no.h5", "--mxnet", places / "no-mx", places / "no-images")
    return [
        (("xception-evaluate", places / "no-mx", places / "no-data", "--report", folder),
         ("--report %s: is a folder" % folder,)),
        (("xception-evaluate", places / "no-mx", places / "no-data", "--out", file),
         ("--out %s: is a file" % file,)),
        (("xception-evaluate", places / "no-mx", places / "no-data", "--report",
          file / "r.json"), ("--report", "%s is a file" % file)),
        (("xception-parity",) + nowhere + ("--report", folder),
         ("--report %s: is a folder" % folder,)),
        (("xception-parity",) + nowhere + ("--per-layer", "--plot", file / "sub" / "p.png"),
         ("--plot", "%s is a file" % file)),
        (("xception-finetune", places / "no-data", "--out", file, "--epochs", "1"),
         ("--out %s: is a file" % file,)),
        (("xception-finetune", places / "no-data", "--out", places / "run", "--tensorboard",
          file), ("--tensorboard %s: is a file" % file,)),
    ]


def test_unwritable_outputs_are_refused_before_anything_is_opened(places):
    before = sorted(os.listdir(places))
    for args, fragments in cases(places):
        result = run_tool(*args)
        assert_bad_input(result, *fragments)
        assert sorted(os.listdir(places)) == before, args
        assert os.listdir(places / "folder") == []
