"""The benchmark's per-layer comparison (bench/layers.py) puts each runtime's records in the
same Xception flow and kind of layer: MXNet's oneDNN lines by counting convolutions, the
peers' by their layer names."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))
import layers  # noqa: E402


def verbose_line(primitive, descriptor, ms):
    return ("dnnl_verbose,exec,cpu,%s,jit:avx512_core,forward_inference,src_f32 dst_f32,,"
            "alg:x,%s,%s" % (primitive, descriptor, ms)).split(",")


def test_mxnet_convolutions_are_counted_off_into_blocks_and_kinds():
    lines = []
    for block, count in enumerate(layers.CONVOLUTIONS_PER_BLOCK, 1):
        for i in range(count):
            grouped = i % 2 == 0 and block > 1
            descriptor = "mb8_%sic64oc64_ih19oh19kh%d" % ("g64" if grouped else "",
                                                           3 if grouped or block == 1 else 1)
            lines.append(verbose_line("convolution", descriptor, block))
        lines.append(verbose_line("reorder", "8x64x19x19", 0.5))      # the next block's
        lines.append(verbose_line("pooling_v2", "mb8ic64_ih19oh10", 0.125))  # this block's
    lines.append(verbose_line("inner_product", "mb8ic2048oc1000", 0.25))
    groups = layers.grouped([layers.mxnet_records(lines)])
    # each of a block's convolutions takes as many ms as the block's number
    entry = sum(groups["entry"][k] for k in ("depthwise 3x3", "pointwise 1x1", "block 1's 3x3"))
    assert entry == 1 * 2 + 2 * 5 + 3 * 5 + 4 * 5
    assert groups["entry"]["block 1's 3x3"] == 2
    middle = groups["middle"]["depthwise 3x3"] + groups["middle"]["pointwise 1x1"]
    assert middle == sum(6 * b for b in range(5, 13))
    assert groups["middle"]["depthwise 3x3"] == sum(3 * b for b in range(5, 13))
    assert groups["exit"]["classifier"] == 0.25
    # reorders after blocks 1-3 (entry), 4-11 (middle), 12-14 (exit: the last one has no
    # next block); pooling after blocks 1-4, 5-12, 13-14
    assert [groups[f]["reorder / layout"] for f in layers.FLOWS] == [1.5, 4.0, 1.5]
    assert [groups[f]["pooling"] for f in layers.FLOWS] == [0.5, 1.0, 0.25]


def test_peer_records_take_their_block_from_names_or_the_record_before():
    records = [("input_reorder", "Reorder", 1.0),
               ("xception/block4_sepconv2/separable_conv2d/depthwise", "GroupConvolution", 2.0),
               ("Multiply_9799", "Convolution", 3.0),               # renamed pointwise
               ("xception/block5_sepconv1_act/Relu", "Relu", 4.0),
               ("xception/block12_sepconv3/depthwise:0_nchwc", "Conv", 5.0),
               ("xception/add_10/add", "Add", 6.0),
               ("xception/block13_pool/MaxPool", "MaxPool", 7.0),
               ("xception/block1_conv1/Conv2D_token_0", "QLinearConv", 8.0),
               ("predictions", "FullyConnected", 9.0)]
    found = layers.by_names(records)
    assert found == [("entry", "reorder / layout", 1.0), ("entry", "depthwise 3x3", 2.0),
                     ("entry", "pointwise 1x1", 3.0), ("middle", "ReLU / add", 4.0),
                     ("middle", "depthwise 3x3", 5.0), ("middle", "ReLU / add", 6.0),
                     ("exit", "pooling", 7.0), ("entry", "block 1's 3x3", 8.0),
                     ("entry", "classifier", 9.0)]


def test_the_median_of_several_profiled_runs_is_taken_per_group():
    runs = [[("entry", "pooling", ms)] for ms in (1.0, 5.0, 2.0)]
    assert layers.grouped(runs) == {"entry": {"pooling": 2.0}, "middle": {}, "exit": {}}


def test_onnxruntime_profile_is_split_into_runs_at_the_first_node():
    events = [{"cat": "Session", "name": "model_run", "dur": 10}]
    for _ in range(3):
        events += [{"cat": "Node", "name": n + "_kernel_time", "dur": 1000,
                    "args": {"op_name": op}} for n, op in (("a", "Conv"), ("b", "Relu"))]
        events.append({"cat": "Node", "name": "b_fence_before", "args": {"op_name": "Relu"}})
    runs = layers.onnxruntime_records(events)
    assert runs == [[("a", "Conv", 1.0), ("b", "Relu", 1.0)]] * 3
