"""``auto`` measures its candidates (channel padding, oneDNN's ISA cap) at first use, runs the
fastest, and caches the choice per machine and checkpoint shape; the flags still override.

The rates are a test's (``XCEPTION_MX_FAULT=auto-rates=...``), so that what is chosen does
not hang on this machine's timing; one test measures for real and checks only what it
recorded.  Each run is a fresh process: oneDNN takes its ISA cap at the process's first
network and keeps it, and the test reads the cap it took (``cpu.PROCESS``)."""
import json
import subprocess
import sys

import pytest

from conftest import PHOTOS, assert_bad_input, cpu_file, run_tool

AVX512 = "avx2 avx512f avx512bw avx512vl avx512dq"
# padded under an AVX512_MIC cap is the fastest, then padded and uncapped: not what the rules
# pick for this AMD CPU (unpadded, capped at AVX2; unpadded, uncapped in a library process)
RATES = "0/all:10+1/all:12+0/avx2:5+1/avx2:6+0/avx512_mic:1+1/avx512_mic:30"
OTHER_RATES = "0/all:50+1/all:1+0/avx2:1+1/avx2:1+0/avx512_mic:1+1/avx512_mic:1"
RUN = """
import sys, xception_mx as xm
from xception_mx.cpu import PROCESS, one_precision_process
prefix, one, padding, isa, batch = sys.argv[1:6]
if one == "1":
    one_precision_process()               # as xception-predict declares
model = xm.load(prefix, channel_padding=padding, onednn_isa=isa, batch_size=int(batch))
model.logits(sys.argv[6:])
print("RESULT", model.padded, PROCESS["cap"])
"""


@pytest.fixture
def env(tmp_path):
    return {"XCEPTION_MX_AUTO": "measure", "XCEPTION_MX_AUTO_CACHE": str(tmp_path / "auto.json"),
            "XCEPTION_MX_CPUINFO": cpu_file(tmp_path, "AuthenticAMD", AVX512)}


def run(prefix, env, rates=None, one=True, padding="auto", isa="auto", batch=8):
    extra = {"XCEPTION_MX_FAULT": "auto-rates=" + rates} if rates else {}
    result = subprocess.run([sys.executable, "-c", RUN, str(prefix), "1" if one else "0",
                             padding, isa, str(batch), PHOTOS[0]], capture_output=True,
                            text=True, timeout=600, env=dict(__import__("os").environ, **env,
                                                             **extra))
    assert result.returncode == 0, result.stderr[-3000:]
    padded, cap = result.stdout.split("RESULT")[-1].split()
    return padded == "True", cap, result.stderr


def measuring(stderr):
    """How many candidates the run measured (0: none)."""
    for line in stderr.splitlines():
        if line.startswith("auto: measuring ") and " ways " in line:
            return int(line.split()[2])
    return 0


def test_auto_runs_the_fastest_candidate_and_reuses_the_measurement(base, env, tmp_path):
    prefix = base / "x71"
    padded, cap, said = run(prefix, env, RATES)
    assert measuring(said) == 6 and (padded, cap) == (True, "AVX512_MIC"), said
    assert "auto: padding on, ISA avx512_mic, measured in " in said
    cache = json.loads((tmp_path / "auto.json").read_text())
    (machine, shapes), = cache.items()
    (shape, entry), = shapes.items()
    assert "fp32" in shape and "input 3x71x71" in shape and "batch 8" in shape
    assert entry["pick"] == "padding on, ISA avx512_mic"
    assert entry["rates"]["padding on, ISA all"] == 12
    # later runs take the cache, whatever these rates would say
    again = run(prefix, env, OTHER_RATES)
    assert measuring(again[2]) == 0 and again[:2] == (True, "AVX512_MIC"), again[2]
    # another batch size is another shape: measured again
    other = run(prefix, env, OTHER_RATES, batch=4)
    assert measuring(other[2]) == 6 and other[:2] == (False, "ALL"), other[2]


def test_the_flags_fix_their_part_and_auto_measures_the_rest(base, env):
    prefix = base / "x71"
    padded, cap, said = run(prefix, env, RATES, isa="all")
    assert measuring(said) == 2 and (padded, cap) == (True, "ALL"), said
    padded, cap, said = run(prefix, env, RATES, padding="off")
    assert measuring(said) == 3 and (padded, cap) == (False, "ALL"), said
    padded, cap, said = run(prefix, env, RATES, padding="off", isa="avx512_mic")
    assert measuring(said) == 0 and (padded, cap) == (False, "AVX512_MIC"), said


def test_a_library_process_measures_paddings_only(base, env):
    """``xm.load`` without one precision declared: a later bf16 network must still run, so
    fp32 takes no cap, and only the paddings are candidates."""
    padded, cap, said = run(base / "x71", env, RATES, one=False)
    assert measuring(said) == 2 and (padded, cap) == (True, "ALL"), said


def test_rules_measure_nothing_and_a_bad_setting_is_one_line(base, env, tmp_path):
    padded, cap, said = run(base / "x71", dict(env, XCEPTION_MX_AUTO="rules"), RATES)
    assert measuring(said) == 0 and not (tmp_path / "auto.json").exists()
    assert (padded, cap) == (False, "AVX2")       # the AMD rule: unpadded, capped at AVX2
    result = run_tool("xception-predict", base / "x71", PHOTOS[0],
                      env=dict(env, XCEPTION_MX_AUTO="bogus"))
    assert_bad_input(result, "XCEPTION_MX_AUTO=bogus: expected one of measure, rules")


def test_xception_predict_measures_once_for_real_and_records_each_rate(base, tmp_path):
    """A real measurement (the CPU this runs on, its own flags): every candidate's rate is
    recorded, positive, and the pick is the fastest recorded."""
    env = {"XCEPTION_MX_AUTO": "measure", "XCEPTION_MX_AUTO_CACHE": str(tmp_path / "a.json")}
    result = run_tool("xception-predict", base / "x71", PHOTOS[0], "--top", 1, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    entry, = next(iter(json.loads((tmp_path / "a.json").read_text()).values())).values()
    assert len(entry["rates"]) == measuring(result.stderr) >= 2
    assert all(rate > 0 for rate in entry["rates"].values())
    assert entry["pick"] == max(entry["rates"], key=entry["rates"].get)
    again = run_tool("xception-predict", base / "x71", PHOTOS[0], "--top", 1, env=env)
    assert again.returncode == 0 and measuring(again.stderr) == 0
    assert again.stdout == result.stdout


@pytest.mark.parametrize("rates, padded", [("0/all:10+1/all:20", True),
                                           ("0/all:20+1/all:10", False)])
def test_quantize_pads_the_copy_as_measured(base, env, tmp_path, rates, padded):
    out = tmp_path / "served"
    env = dict(env, XCEPTION_MX_FAULT="auto-rates=" + rates)
    result = run_tool("xception-quantize", base / "x71", "-o", out, "--precision", "fp32",
                      env=env)
    assert result.returncode == 0 and measuring(result.stderr) == 2, result.stderr[-2000:]
    meta = json.loads((tmp_path / "served-meta.json").read_text())
    assert (meta["optimized"]["padded_convolutions"] > 0) == padded
    again = run_tool("xception-quantize", base / "x71", "-o", out, "--precision", "fp32",
                     env=dict(env, XCEPTION_MX_AUTO_CACHE=str(tmp_path / "new.json")))
    # OUT exists: refused before any work (nothing measured, though nothing is cached)
    assert_bad_input(again, "served")
    assert measuring(again.stderr) == 0 and not (tmp_path / "new.json").exists()


def test_a_cache_that_cannot_be_written_is_said_and_the_run_goes_on(base, env, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    padded, cap, said = run(base / "x71", dict(env, XCEPTION_MX_AUTO_CACHE=str(
        blocked / "auto.json")), RATES)
    assert (padded, cap) == (True, "AVX512_MIC") and measuring(said) == 6
    assert "auto: cannot keep the measurement in %s" % (blocked / "auto.json") in said


def test_a_damaged_cache_is_measured_again_and_candidates_that_fail_leave_the_rules(
        base, env, tmp_path):
    for damaged in ('["not", "a cache"]', '{"m": {"s": {"rates": {"padding on, ISA all": null'
                                          '}}}}'):
        (tmp_path / "auto.json").write_text(damaged)
        padded, cap, said = run(base / "x71", env, RATES)
        assert measuring(said) == 6 and (padded, cap) == (True, "AVX512_MIC"), said
        assert json.loads((tmp_path / "auto.json").read_text())       # rewritten
    fresh = dict(env, XCEPTION_MX_AUTO_CACHE=str(tmp_path / "other.json"))
    padded, cap, said = run(base / "x71", fresh, "0/all:0")          # none ran
    assert "auto: no candidate ran; the rules choose" in said
    assert (padded, cap) == (False, "AVX2") and not (tmp_path / "other.json").exists()


def test_quantize_of_a_missing_checkpoint_is_one_line_before_any_measurement(env, tmp_path):
    result = run_tool("xception-quantize", tmp_path / "nope", "-o", tmp_path / "out",
                      "--precision", "fp32", env=env)
    assert_bad_input(result, "nope")
    assert measuring(result.stderr) == 0 and not (tmp_path / "auto.json").exists()


def test_a_cap_the_user_set_is_kept_and_only_paddings_are_measured(base, env, tmp_path):
    padded, cap, said = run(base / "x71", dict(env, DNNL_MAX_CPU_ISA="AVX2"),
                            "0/auto:10+1/auto:20")
    assert measuring(said) == 2 and (padded, cap) == (True, "AVX2"), said
    shape, = next(iter(json.loads((tmp_path / "auto.json").read_text()).values()))
    assert shape.endswith("DNNL_MAX_CPU_ISA=AVX2")
