"""Timed workloads, each run in its own process by the benchmarks:
``python bench/workloads.py NAME [args]`` prints one JSON line of results.

Each framework runs alone in its process (no shared thread pools); MXNet uses
``OMP_NUM_THREADS`` = available cores (set by ``xception_mx``), TensorFlow its
defaults (all cores).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import xception_mx  # noqa: E402,F401  (threads, and MXNet before TensorFlow)
import numpy as np  # noqa: E402

from timing import images_per_s  # noqa: E402


def _batch(batch, size, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
    y = rng.randint(0, 1000, batch).astype(np.float32)
    return x, y


def _photos(calib, size):
    """The images of ``calib`` (files or folders) at ``size`` x ``size``, NCHW."""
    from xception_mx.images.decode import image_files, load_images
    return load_images(image_files(calib), (size, size))


def train_mxnet(batch=8, size=299, steps=6, warmup=2, padded=False, amp=False):
    """Training steps as xception-finetune takes them; ``amp``: its ``--amp`` on a CPU
    (MXNet's AMP in bfloat16, float32 parameters)."""
    import mxnet as mx
    from mxnet import gluon
    from xception_mx.model.padding import BLOCK
    from xception_mx.training.recipe.optimizers import resolve_optimizer
    from xception_mx.training.train import (build_network, make_trainer, train_step,
                                            trainable_params)
    if amp:
        from mxnet.contrib import amp as mx_amp
        mx_amp.init(target_dtype="bfloat16")
    net, _, shapes = build_network(1000, (size, size), [mx.cpu()],
                                   channel_block=BLOCK if padded else None)
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = make_trainer(trainable_params(net, False),
                           resolve_optimizer("sgd", 0.001, {"momentum": 0.9, "wd": 1e-4}),
                           "device", amp=amp)
    if amp:
        mx_amp.init_trainer(trainer)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    x, y = _batch(batch, size)
    x, y = mx.nd.array(x), mx.nd.array(y)
    for _ in range(warmup):
        train_step(net, trainer, loss_fn, x, y, [mx.cpu()], amp=amp, shapes=shapes)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(net, trainer, loss_fn, x, y, [mx.cpu()], amp=amp, shapes=shapes)
    mx.nd.waitall()
    return {"images_per_s": batch * steps / (time.perf_counter() - start)}


def _keras_training(batch, size, policy=None):
    """A compiled Keras Xception (SGD momentum, logits) and an NHWC batch; ``policy``: a
    Keras dtype policy (``mixed_bfloat16``)."""
    from xception_mx.keras_side import import_keras
    keras = import_keras()
    if policy:
        keras.mixed_precision.set_global_policy(policy)
    model = keras.applications.Xception(weights=None, classifier_activation=None,
                                        input_shape=(size, size, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _batch(batch, size)
    return model, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y


def train_keras(batch=8, size=299, steps=6, warmup=2):
    model, x, y = _keras_training(batch, size)
    xs, ys = np.concatenate([x] * steps), np.concatenate([y] * steps)
    model.fit(x, y, batch_size=batch, epochs=warmup, verbose=0)
    start = time.perf_counter()
    model.fit(xs, ys, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return {"images_per_s": batch * steps / (time.perf_counter() - start)}


def train_keras_on_batch(batch=8, size=299, steps=6, warmup=2, policy=None):
    model, x, y = _keras_training(batch, size, policy)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return {"images_per_s": batch * steps / (time.perf_counter() - start)}


def _time_inference(run, batches, size, iterations):
    return images_per_s(run, batches, lambda batch: (batch, 3, size, size), iterations)


def infer_keras(batches=(1, 8, 32), size=299, iterations=32):
    from xception_mx.keras_side import import_keras
    keras = import_keras()
    model = keras.applications.Xception(weights=None, classifier_activation=None,
                                        input_shape=(size, size, 3))
    rates = _time_inference(lambda x: model.predict_on_batch(
        np.ascontiguousarray(x.transpose(0, 2, 3, 1))), batches, size, iterations)
    return {"images_per_s": rates}


def infer_mxnet(prefix, mode, batches=(1, 8, 32), size=299, iterations=32, calib=None,
                pad_channels=None, photos=None, logits_out=None):
    """``mode``: plain (imperative Gluon), static (hybridized, static allocation),
    fused (oneDNN-fused fp32, channels padded to 16), fused-unpadded (728 channels), bf16,
    int8 (``pad_channels``: on, off, default as xception-predict's auto).  ``photos``: an
    .npy of NCHW images whose logits go to ``logits_out``."""
    import mxnet as mx
    from xception_mx import Xception
    from xception_mx.serving.fast import load_fast_network
    if mode in ("plain", "static"):
        net = Xception(classifier_activation=None, input_shape=(size, size))
        net.collect_params().load(prefix + "-0000.params", ctx=mx.cpu())
        if mode == "static":
            net.hybridize(static_alloc=True, static_shape=True)
        nets = {b: net for b in batches}
    else:
        calibration = _photos(calib, size) if mode == "int8" else None
        precision = "fp32" if mode.startswith("fused") else mode
        if pad_channels is None:
            pad_channels = "auto" if mode in ("bf16", "int8") else mode != "fused-unpadded"
        nets = {b: load_fast_network(prefix, precision=precision, batch_size=b,
                                     calibration=calibration, pad_channels=pad_channels)[0]
                for b in batches}
    rates = {}
    for b in batches:
        rates.update(_time_inference(lambda x: nets[b](mx.nd.array(x)).wait_to_read(), [b],
                                     size, iterations))
    if logits_out:
        from xception_mx.serving.loading import run_batches
        np.save(logits_out, run_batches(nets[batches[0]], np.load(photos),
                                        batch_size=batches[0]))
    return {"images_per_s": rates}


def keras_logits(weights, photos, logits_out):
    """Keras' own logits (Keras 3, the weights file the other rows convert) on ``photos``."""
    from xception_mx.keras_side import keras_predict, load_keras_model
    model = load_keras_model(weights, include_top=True, classes=1000)
    np.save(logits_out, keras_predict(model, np.load(photos)))
    return {}


def save_photos(calib, out, size=299):
    """The photos as the benchmark's rows take them (NCHW, Keras' preprocessing) to ``out``."""
    np.save(out, _photos(calib, size))
    return {}


def depthwise(framework, shapes, batch=8, iterations=10):
    """Forward time (ms) of one 3x3 depthwise convolution at each (C, H)."""
    out = {}
    if framework == "mxnet":
        import mxnet as mx
        for channels, size in shapes:
            x = mx.nd.random.uniform(shape=(batch, channels, size, size))
            w = mx.nd.random.uniform(shape=(channels, 1, 3, 3))

            def run():
                mx.nd.Convolution(x, w, kernel=(3, 3), pad=(1, 1), num_filter=channels,
                                  num_group=channels, no_bias=True).wait_to_read()
            out["%dx%d" % (channels, size)] = _ms(run, iterations)
    else:
        from xception_mx.keras_side import import_keras
        import_keras()
        import tensorflow as tf
        for channels, size in shapes:
            layer = tf.keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)
            x = tf.random.uniform((batch, size, size, channels))
            call = tf.function(lambda t: layer(t))
            out["%dx%d" % (channels, size)] = _ms(lambda: call(x).numpy(), iterations)
    return out


def _ms(run, iterations):
    run()
    run()
    start = time.perf_counter()
    for _ in range(iterations):
        run()
    return 1000 * (time.perf_counter() - start) / iterations


def peak_gflops(n=2048, repeats=10):
    """Practical peaks: float32, the faster of numpy's matrix multiply and MXNet's oneDNN
    inner product (FullyConnected) on the same matrices; int8, oneDNN's int8 inner product."""
    import mxnet as mx
    a = np.random.rand(n, n).astype(np.float32)
    x = mx.nd.array(a)

    def numpy_mm():
        a @ a

    def onednn_fc():
        mx.nd.FullyConnected(x, x, num_hidden=n, no_bias=True).wait_to_read()
    def giga_per_s(run):
        return 2 * n ** 3 / (_ms(run, repeats) / 1000) / 1e9
    rates = {"numpy": giga_per_s(numpy_mm), "onednn_fc": giga_per_s(onednn_fc)}
    int8 = {dtype: giga_per_s(run) for dtype, run in int8_products(n).items()}
    return {"gflops": max(rates.values()), "by": rates, "int8_gops": max(int8.values()),
            "int8_by": int8}


def int8_products(n):
    """oneDNN's int8 inner product (``quantized_fully_connected``: uint8 or int8 data times
    int8 weights, int32 sums, the arithmetic of the int8 network's convolutions) on n x n
    matrices, as ``{data dtype: run}``."""
    import mxnet as mx
    rng = np.random.RandomState(0)
    weight = mx.nd.array(rng.randint(-127, 128, (n, n)), dtype="int8")
    low, high = mx.nd.array([-1.0]), mx.nd.array([1.0])
    runs = {}
    for dtype, lowest in (("uint8", 0), ("int8", -127)):
        data = mx.nd.array(rng.randint(lowest, 128, (n, n)), dtype=dtype)

        def run(data=data):
            mx.nd.contrib.quantized_fully_connected(data, weight, low, high, low, high,
                                                     num_hidden=n, no_bias=True)[0].wait_to_read()
        runs[dtype] = run
    return runs


def int8_conv_rate(channels=736, size=19, batch=8, convs=4, repeats=20):
    """G operations/s of oneDNN's int8 1x1 convolution (with its fused ReLU) on the middle
    flow's shape by default: a chain of ``convs`` of them, channels x size x size, quantized
    as the int8 network is (``quantize_int8``, naive calibration), hybridized with static
    allocation; whether it runs on AMX is the caller's ``DNNL_MAX_CPU_ISA``."""
    import mxnet as mx
    from xception_mx.serving.fast import quantize_int8
    from xception_mx.serving.loading import symbol_block
    rng = np.random.RandomState(0)
    x, weights = mx.sym.var("data"), {}
    for i in range(convs):
        x = mx.sym.Activation(mx.sym.Convolution(x, kernel=(1, 1), num_filter=channels,
                                                 no_bias=True, name="pw%d" % i), act_type="relu")
        weights["pw%d_weight" % i] = mx.nd.array(
            rng.normal(0, channels ** -0.5, (channels, channels, 1, 1)).astype(np.float32))
    data = rng.uniform(0, 1, (batch, channels, size, size)).astype(np.float32)
    net = symbol_block(*quantize_int8(x, weights, {}, data), static=True)
    data = mx.nd.array(data)
    ms = _ms(lambda: net(data).wait_to_read(), repeats)
    return {"gops": convs * 2 * batch * size * size * channels ** 2 / (ms / 1000) / 1e9}


def _warm_fast_network(prefix, precision, batch, size, pad_channels, calib):
    """A fast network (int8 calibrated on the images ``calib``) and a random batch, after two
    warm-up forwards."""
    import mxnet as mx
    from xception_mx.serving.fast import load_fast_network
    calibration = _photos(calib, size) if calib else None
    net = load_fast_network(prefix, precision=precision, batch_size=batch,
                            calibration=calibration, pad_channels=pad_channels)[0]
    x = mx.nd.array(np.random.RandomState(0).uniform(-1, 1, (batch, 3, size, size))
                    .astype(np.float32))
    net(x).wait_to_read()
    net(x).wait_to_read()
    return net, x


def primitives(prefix, pad_channels, batch=8, size=299, precision="fp32", calib=None):
    """Milliseconds per oneDNN primitive implementation in one ``precision`` forward (fused
    fp32; int8 calibrated on the images ``calib``), from
    ``MKLDNN_VERBOSE=1`` (set by the caller before MXNet starts): ``{"kind impl":
    [calls, ms]}``, the verbose lines of the measured forward only (after two warm-ups)."""
    from xception_mx.cpu import executed_primitives
    net, x = _warm_fast_network(prefix, precision, batch, size, pad_channels, calib)
    _, executed = executed_primitives(lambda: net(x).wait_to_read())
    table = {}
    for fields in executed:
        key = "%s %s" % (fields[3], fields[4])
        calls, ms = table.get(key, [0, 0.0])
        table[key] = [calls + 1, ms + float(fields[-1])]
    return {"primitives": table}


def layer_profile(prefix, precision, batch=8, size=299, pad_channels="auto", calib=None,
                  runs=3):
    """Milliseconds per (flow, kind) of a fast-path forward (``bench/layers.py``), the median
    of ``runs`` forwards' ``MKLDNN_VERBOSE`` lines (set by the caller), and the forward's
    median wall time."""
    import statistics
    import layers
    from xception_mx.cpu import executed_primitives
    net, x = _warm_fast_network(prefix, precision, batch, size, pad_channels, calib)
    measured, walls = [], []
    for _ in range(runs):
        start = time.perf_counter()
        measured.append(executed_primitives(lambda: net(x).wait_to_read())[1])
        walls.append(1000 * (time.perf_counter() - start))
    return {"groups": layers.grouped([layers.mxnet_records(r) for r in measured]),
            "wall_ms": statistics.median(walls)}


def evaluate_folder(prefix, folder, batch=32, workers=2):
    """xception-evaluate's loop on a labelled folder: images/s after its first batch."""
    from xception_mx.evaluation.run import evaluate
    report = evaluate(prefix, folder, batch_size=batch, workers=workers, log=lambda *_: None)
    return {"images_per_s": {str(batch): report["images_per_s"]}, "top1": report["top1"]}


WORKLOADS = {"evaluate_folder": evaluate_folder, "primitives": primitives,
             "layer_profile": layer_profile, "keras_logits": keras_logits,
             "save_photos": save_photos, "train_mxnet": train_mxnet, "train_keras": train_keras,
             "train_keras_on_batch": train_keras_on_batch, "infer_keras": infer_keras,
             "infer_mxnet": infer_mxnet, "depthwise": depthwise,
             "peak_gflops": peak_gflops, "int8_conv_rate": int8_conv_rate}

def predict_bytes(prefix, photos, batches=(1, 8), requests=64):
    """``xm.load(prefix).predict`` of encoded photos (as a server's bodies arrive), in one
    process with no server: images/s at each batch, decoding and resizing included."""
    from xception_mx.serving.runtime import Model
    bodies = [open(os.path.join(photos, n), "rb").read() for n in sorted(os.listdir(photos))
              if n.endswith(".jpg")]
    rates = {}
    for batch in batches:
        model = Model(prefix, batch_size=batch)
        model.predict([bodies[0]] * batch)                     # network built, warm
        started = time.perf_counter()
        for k in range(0, requests, batch):
            model.predict([bodies[(k + i) % len(bodies)] for i in range(batch)])
        rates[str(batch)] = requests / (time.perf_counter() - started)
    return {"images_per_s": rates}


WORKLOADS["predict_bytes"] = predict_bytes

if __name__ == "__main__":
    name, kwargs = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    result = WORKLOADS[name](**kwargs)
    import resource
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(result))
