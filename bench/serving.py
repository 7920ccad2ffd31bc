"""Section 9: the demo's checkpoint served by a real Multi Model Server (``xception-export
--format mms``, one worker), under 8 clients of 25 requests each, beside the same model called
in-process with the same bodies (``Model.predict``: no server); requests/s and latency."""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from common import BIN, PHOTOS, PREFIX, ROOT, REPEATS, table, workload

sys.path.insert(0, os.path.join(ROOT, "tests", "deploy"))
from mms_server import MmsServer  # noqa: E402

CLIENTS, REQUESTS = 8, 25


def load(server, name, bodies):
    """8 clients x 25 requests: ``(requests/s, p50 ms, p99 ms, failures)``."""
    def client(k):
        times = []
        for i in range(REQUESTS):
            started = time.perf_counter()
            status, _, _ = server.predict(name, bodies[(k + i) % len(bodies)])
            times.append((time.perf_counter() - started, status))
        return times

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        times = [t for client_times in pool.map(client, range(CLIENTS)) for t in client_times]
    wall = time.perf_counter() - started
    if any(status != 200 for _, status in times):
        raise RuntimeError("%s: %d of %d requests failed" % (
            name, sum(status != 200 for _, status in times), len(times)))
    ms = sorted(1000 * t for t, _ in times)
    return (len(times) / wall, statistics.median(ms), ms[int(0.99 * (len(ms) - 1))],
            sum(status != 200 for _, status in times))


def serving_section():
    bodies = [open(os.path.join(PHOTOS, n), "rb").read() for n in sorted(os.listdir(PHOTOS))
              if n.endswith(".jpg")]
    with tempfile.TemporaryDirectory() as folder:
        mars = {}
        for batch in (1, 8):             # the forward pass's batch: MMS's batch size
            mars[batch] = os.path.join(folder, "xception%d.mar" % batch)
            subprocess.run([os.path.join(BIN, "xception-export"), PREFIX, "--format", "mms",
                            "-o", mars[batch], "--batch-size", str(batch)], check=True,
                           capture_output=True)
        server = MmsServer(os.path.join(folder, "server"), {"xception": mars[1]}).start()
        try:
            server.register("batched", mars[8], 8, max_batch_delay=50)
            for name in ("xception", "batched"):
                load(server, name, bodies[:2])                          # warm
            runs = {"xception": [], "batched": []}
            for _ in range(REPEATS):
                for name in runs:
                    runs[name].append(load(server, name, bodies))
        finally:
            server.stop()
    direct = [workload("predict_bytes", prefix=PREFIX, photos=PHOTOS) for _ in range(REPEATS)]
    rows = []
    for name, label in (("xception", "MMS, 1 worker, batch size 1 (--batch-size 1)"),
                        ("batched", "MMS, 1 worker, batch_size 8, max_batch_delay 50 ms "
                                    "(--batch-size 8)")):
        rates = [r[0] for r in runs[name]]
        rows.append([label, "%.1f / %.1f / %.1f" % (min(rates), statistics.median(rates),
                                                    max(rates)),
                     "%.0f" % statistics.median(r[1] for r in runs[name]),
                     "%.0f" % statistics.median(r[2] for r in runs[name]),
                     str(sum(r[3] for r in runs[name]))])
    for batch in ("1", "8"):
        rates = [d["images_per_s"][batch] for d in direct]
        rows.append(["in-process Model.predict of the same bodies, batch %s (no server)" % batch,
                     "%.1f / %.1f / %.1f" % (min(rates), statistics.median(rates), max(rates)),
                     "", "", ""])
    text = ("The demo's checkpoint (299x299, fp32 fast path) exported with `xception-export "
            "--format mms`, served on 127.0.0.1; %d clients x %d requests of the sample "
            "JPEGs, min / median / max requests/s of %d rounds, latency medians over the "
            "rounds.\n\n" % (CLIENTS, REQUESTS, REPEATS))
    return text + table(["", "requests/s", "p50 ms", "p99 ms", "failed"], rows)
