"""Images/s of a forward, the one timing loop of every inference row: imported by
``bench/workloads.py`` (the project's venv) and ``bench/peers.py`` (the peers' venv), so it
needs numpy only."""
import time

import numpy as np


def images_per_s(run, batches, shape, iterations):
    """``{batch: images/s}``: ``run`` on a seeded random batch of ``shape(batch)``, two
    warm-ups, then at least ``iterations`` images (two batches at least)."""
    results = {}
    for batch in batches:
        x = np.random.RandomState(batch).uniform(-1, 1, shape(batch)).astype(np.float32)
        run(x)
        run(x)
        n = max(2, iterations // batch)
        start = time.perf_counter()
        for _ in range(n):
            run(x)
        results[str(batch)] = batch * n / (time.perf_counter() - start)
    return results
