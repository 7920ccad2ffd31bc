"""Every command's --help has a line for each argument and shows the defaults
(issue #15); xception-launch says where the worker command goes."""
import argparse
import importlib

import pytest

from conftest import assert_bad_input, run_tool

PARSERS = {"keras2mxnet": "xception_mx.commands.keras2mxnet",
           "mxnet2keras": "xception_mx.commands.mxnet2keras",
           "xception-parity": "xception_mx.commands.parity",
           "xception-predict": "xception_mx.commands.predict",
           "xception-finetune": "xception_mx.commands.finetune",
           "xception-pack": "xception_mx.commands.pack",
           "xception-quantize": "xception_mx.commands.quantize",
           "xception-launch": "xception_mx.commands.launch",
           "xception-evaluate": "xception_mx.commands.evaluate"}
SHOWN = {"xception-finetune": ["(default: 10)", "(default: 32)", "else 0.01)",
                               "default: the file's, else nag", "else cosine)",
                               "default: ignore it"],
         "xception-predict": ["(default: 5)", "(default: 8)", "(default: keras)"],
         "xception-pack": ["(default: 95)"],
         "xception-launch": ["(default: 1)", "(default: 30.0)"],
         "xception-evaluate": ["(default: keras)", "(default: 32)", "(default: 0.0)"],
         "mxnet2keras": [".weights.h5", "[validate]"]}


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_help_has_a_line_for_every_argument_with_its_default(command):
    parser = importlib.import_module(PARSERS[command]).build_parser()
    formatter = parser._get_formatter()
    for action in parser._actions:
        assert action.help, (command, action.option_strings or action.dest)
        default = action.default
        if action.option_strings and default not in (None, "", argparse.SUPPRESS) and \
                not isinstance(default, bool):
            assert "default" in formatter._expand_help(action), (command, action.dest)
    shown = run_tool(command, "--help")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    for fragment in SHOWN.get(command, []):
        assert fragment in text, (command, fragment)


def test_launch_without_the_double_dash_says_where_the_command_goes():
    result = run_tool("xception-launch", "-n", "2", "xception-finetune", "data")
    assert_bad_input(result, "follows --", "xception-launch -n 2 -s 1 -- xception-finetune")


def test_output_still_buffered_when_a_command_ends_into_a_closed_pipe_is_dropped_quietly():
    """``keras2mxnet FILE --print-name-table | head -4`` (a README line) when ``head`` is gone
    before Python flushes the last of the output at exit: exit 0 and nothing on stderr (was
    'Exception ignored ... BrokenPipeError' and exit 120, depending on who was faster)."""
    import os
    import subprocess
    import sys
    body = ("import sys\nfrom xception_mx.commands.runner import run\n"
            "def body(argv):\n    sys.stdout.write('row\\n' * 10)\n    return 0\n"
            "sys.exit(run('tool', body))\n")
    reader, writer = os.pipe()
    os.close(reader)                 # the small output stays buffered until the command ends
    # (as it does for users; this shell's PYTHONUNBUFFERED would write it at once)
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run([sys.executable, "-c", body], stdout=writer, env=buffered,
                            stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(writer)
    assert result.returncode == 0 and result.stderr == "", (result.returncode, result.stderr)


@pytest.mark.parametrize("command", ["xception-predict", "keras2mxnet", "xception-finetune"])
def test_an_unknown_progress_mode_is_refused_before_any_work(command, tmp_path):
    result = run_tool(command, tmp_path / "nothing", env={"XCEPTION_MX_PROGRESS": "bogus"})
    assert_bad_input(result, "XCEPTION_MX_PROGRESS=bogus: expected one of bar, lines, off")
