"""BatchNorm statistics in real xception-finetune runs with BN training (issue
#14, item 5): after every epoch, every copy on every device holds the mean of
what the devices computed, on 2 CPU contexts, 2 parameter-server workers and 2
Horovod workers.  The run saves the copies before and after averaging
(``XCEPTION_MX_BN_DUMP``, ``xception_mx.faults``)."""
import glob
import os
import subprocess

import numpy as np
import pytest

from conftest import BIN
from xception_mx.faults import BN_DUMP

FINETUNE = os.path.join(BIN, "xception-finetune")


def copies(folder, stage, epoch):
    """``{statistic: [every device's copy]}`` over all ranks."""
    found = {}
    for path in sorted(glob.glob(os.path.join(folder, "bn-%s-epoch%d-rank*.npz"
                                              % (stage, epoch)))):
        with np.load(path) as arrays:
            for key in arrays.files:
                found.setdefault(key.split("@")[0], []).append(arrays[key])
    return found


@pytest.mark.slow
@pytest.mark.parametrize("job", ["2 contexts", "dist_sync", "horovod"])
def test_every_copy_holds_the_mean_of_what_the_devices_computed(job, base, tmp_path):
    args = [FINETUNE, base / "data", "--out", tmp_path / "run", "--pretrained", base / "x71",
            "--input-shape", "71", "71", "--batch-size", "4", "--epochs", "2", "--workers",
            "0", "--lr", "0.005"]
    if job == "2 contexts":
        command = args + ["--cpus", "2"]
    elif job == "dist_sync":
        command = [os.path.join(BIN, "xception-launch"), "-n", "2", "-s", "1", "--timeout",
                   "300", "--"] + args + ["--kvstore", "dist_sync"]
    else:
        command = [os.path.join(BIN, "horovodrun"), "-np", "2", "--gloo", "-H",
                   "localhost:2"] + args + ["--kvstore", "horovod"]
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                            timeout=400, env=dict(os.environ, **{BN_DUMP: str(tmp_path)}))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for epoch in (1, 2):
        before, after = copies(tmp_path, "before", epoch), copies(tmp_path, "after", epoch)
        assert sorted(before) == sorted(after) and len(before) == 2 * 40
        spread = 0.0
        for name, computed in before.items():
            assert len(computed) == len(after[name]) == 2, name      # two devices
            assert all(np.isfinite(c).all() for c in computed), name
            spread = max(spread, float(np.abs(computed[0] - computed[1]).max()))
            mean = (computed[0] + computed[1]) / 2
            for copy in after[name]:
                np.testing.assert_allclose(copy, mean, rtol=1e-6, atol=1e-7, err_msg=name)
        assert spread > 1e-3            # the devices saw different images: a real check
