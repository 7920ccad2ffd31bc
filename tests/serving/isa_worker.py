"""The fused fp32 network under oneDNN's ISA cap, in a process of its own (the cap holds
for a whole process): ``isa_worker.py PREFIX CHOICE PADDING X.npy OUT.npy`` writes the logits
of X to OUT.npy and prints one JSON line: the cap in force, the environment variable after
the warm-up, and the oneDNN primitives of one forward after it (MKLDNN_VERBOSE=1 must be set
by the caller)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import xception_mx  # noqa: E402,F401  (before MXNet: its thread count)
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from xception_mx.cpu import ISA_ENV, executed_primitives, isa_capped  # noqa: E402
from xception_mx.serving.fast import load_fast_network  # noqa: E402

prefix, choice, padding, x_path, out_path = sys.argv[1:6]
with isa_capped(choice, "fp32", padding == "on") as cap:      # as xception-predict does
    x = mx.nd.array(np.load(x_path))
    net, _ = load_fast_network(prefix, precision="fp32", batch_size=x.shape[0],
                               pad_channels=padding)
    net(x).wait_to_read()              # the first forward also reorders the weights, once
# the environment is given back here: the cap must still hold for what follows
out, executed = executed_primitives(lambda: net(x).asnumpy())
np.save(out_path, out)
print(json.dumps({"cap": cap, "env": os.environ.get(ISA_ENV),
                  "primitives": len(executed),
                  "reorders": sum(fields[3] == "reorder" for fields in executed),
                  "implementations": sorted({fields[4] for fields in executed})}))
