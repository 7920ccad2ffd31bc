"""``xception-finetune``: train a converted Xception on new data.

The run lives in ``--out``; see ``run_dir`` for its files and ``train`` for the
design decisions (several devices, BN statistics, frozen BN, plain graph).
"""
import os
import sys
import time

from mxnet import gluon

from xception_mx.checkpoint.meta import Meta
from xception_mx.checkpoint.reading import read_meta
from xception_mx.cli import Parser, run
from xception_mx.errors import make_sure
from xception_mx.faults import dump_bn_statistics, dump_parameters, fault_point
from xception_mx.model.padding import PADDING_CHOICES
from xception_mx.images.convention import rescales_inside
from xception_mx.model.training_only import augments, seed_step
from xception_mx.progress import progress
from xception_mx.training.export import (EXPORT_NAME, evaluate_export, export_best,
                                         model_input_shape)
from xception_mx.training.frozen import freeze_batchnorm, frozen_layers, frozen_parameters
from xception_mx.training.keras2_statistics import Keras2Variance, written_by_keras2
from xception_mx.training.optimizers import OPTIMIZER_NAMES, run_optimizer
from xception_mx.training.padded_training import channel_block
from xception_mx.training.run_dir import RunDirectory, resume_point
from xception_mx.training.run_setup import (Data, available_memory, check_config,
                                            check_finite_loss, check_finite_start,
                                            check_memory, config_from_args,
                                            keep_head_classes, PIPELINE_AUGMENTATION,
                                            pipeline_augments)
from xception_mx.training.devices import (HOROVOD, check_horovod_gpus, horovod_contexts,
                                          import_horovod, join_job, parse_contexts)
from xception_mx.training.train import (SCHEDULES, Counts, Throughput,
                                        average_bn_statistics, build_network, count_correct,
                                        evaluate, learning_rate, make_trainer,
                                        train_step, trainable_params)
from xception_mx.training.own_model_training import (base_called_in_inference,
                                                    build_own_model_network,
                                                    pretrained_own_model_spec, set_base_inference)

PROG = "xception-finetune"


def build_parser():
    p = Parser(prog=PROG, description="Fine-tune an Xception checkpoint (from keras2mxnet or "
               "an earlier run) on an image folder or RecordIO data, on one CPU, several CPU "
               "contexts or several GPUs.")
    p.add_argument("train", metavar="TRAIN", help="image folder (one subfolder per class) or "
                   ".rec file written by xception-pack")
    p.add_argument("--val", metavar="VAL", help="validation folder or .rec")
    p.add_argument("--val-split", type=float, default=0.0,
                   help="hold out this fraction of TRAIN per class for validation")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics, export)")
    p.add_argument("--pretrained", metavar="PREFIX", help="checkpoint to start from "
                   "(default: from scratch)")
    p.add_argument("--pretrained-epoch", type=int, default=0,
                   help="which PREFIX-%%04d.params of --pretrained")
    p.add_argument("--num-classes", type=int, help="classes of the new head (default: of the "
                   "data); the head is kept when the checkpoint has as many")
    p.add_argument("--input-shape", nargs=2, type=int, metavar=("H", "W"),
                   help="training input size (default: the --pretrained checkpoint's, else "
                        "299 299)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of the whole run")
    p.add_argument("--batch-size", type=int, default=32, help="global batch over all devices")
    p.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="nag",
                   help="MXNet's sgd, nag (Nesterov momentum SGD), adam; or Keras' SGD, Adam, "
                        "AdamW with Keras' formulas, unset settings as Keras sets them "
                        "(keras-sgd, keras-adam, keras-adamw; see docs/finetune.md, Training "
                        "as in Keras)")
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate")
    p.add_argument("--momentum", type=float,
                   help="for sgd and nag (default 0.9) and keras-sgd (default 0, Keras')")
    p.add_argument("--nesterov", action="store_true", help="keras-sgd: Nesterov momentum")
    p.add_argument("--wd", type=float, help="MXNet's weight decay (coupled L2: added to the "
                   "gradient) of sgd, nag and adam (default 1e-4)")
    p.add_argument("--weight-decay", type=float, help="Keras' decoupled weight decay of "
                   "keras-sgd, keras-adam (default none) and keras-adamw (default 0.004): "
                   "w -= lr * weight_decay * w before each step")
    p.add_argument("--beta1", type=float, help="keras-adam(w)'s beta_1 (default 0.9)")
    p.add_argument("--beta2", type=float, help="keras-adam(w)'s beta_2 (default 0.999)")
    p.add_argument("--epsilon", type=float, help="keras-adam(w)'s epsilon (default 1e-7, "
                   "Keras')")
    p.add_argument("--warmup-epochs", type=float, default=0.0,
                   help="linear warmup from 0 to --lr over this many epochs")
    p.add_argument("--lr-schedule", choices=SCHEDULES, default="cosine",
                   help="cosine: decay to 0 at the last epoch; step: times --lr-factor at "
                        "each --lr-steps epoch")
    p.add_argument("--lr-steps", default="", help="epochs of the step decay, e.g. 30,60")
    p.add_argument("--lr-factor", type=float, default=0.1, help="step decay factor")
    p.add_argument("--freeze-base-epochs", type=int, default=0,
                   help="train only the head for the first N epochs")
    p.add_argument("--trainable-from", metavar="LAYER",
                   help="train only this Keras layer and those after it (e.g. "
                        "block13_sepconv1); the layers the Keras file saved non-trainable stay "
                        "frozen in any case")
    p.add_argument("--freeze-bn", action="store_true",
                   help="keep BatchNorm statistics frozen (inference mode) throughout")
    p.add_argument("--min-crop", type=float, default=0.08,
                   help="smallest area fraction of the random resized crop")
    p.add_argument("--pipeline-augmentation", choices=PIPELINE_AUGMENTATION, default="auto",
                   help="the data pipeline's random resized crop and flip: auto (on unless "
                        "the model brings its own augmentation layers, which then act "
                        "alone), on, off (the centre crop of validation)")
    devices = p.add_mutually_exclusive_group()
    devices.add_argument("--gpus", help="GPUs, e.g. 0,1,2,3")
    devices.add_argument("--cpus", type=int, help="N CPU contexts (data-parallel harness)")
    p.add_argument("--kvstore", "--kv-store",
                   choices=("device", "local", "dist_sync", "dist_device_sync", "horovod"),
                   default="device", help="dist_*: one worker of a parameter-server job "
                   "started by xception-launch; horovod: one worker of a job started by "
                   "horovodrun (one device per process)")
    p.add_argument("--amp", action="store_true", help="mixed precision (GPUs only)")
    p.add_argument("--channel-padding", choices=PADDING_CHOICES, default="auto",
                   help="train with channel counts padded to oneDNN's block of 16 (728 -> "
                        "736; the same function, checkpoints keep Keras' shapes); auto: on "
                        "CPUs with AVX-512, where it is faster")
    p.add_argument("--workers", type=int, default=2, help="decoding processes (0: none)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds sample order, crops, flips and a new head")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last complete checkpoint in --out")
    p.add_argument("--stop-after", type=int, metavar="EPOCH",
                   help="stop cleanly after this epoch's checkpoint (continue with --resume)")
    return p


def _phase(config, epoch):
    return "head" if epoch < config["freeze_base_epochs"] else "all"


def _fmt(counts):
    return "loss %.4f top-1 %.3f top-k %.3f" % (counts.loss, counts.top1, counts.topk)


def run_finetune(config, log=print):
    """Run (or resume) a fine-tuning; return the run folder's final state.

    With a ``dist_*`` kvstore or Horovod this process is one worker: it trains
    on its shard, and only rank 0 logs, writes checkpoints and exports.
    """
    compute_size = check_config(config)
    contexts = parse_contexts(config["gpus"], config["cpus"])
    kvstore, rank, workers, local_rank = join_job(config["kvstore"])
    if kvstore == HOROVOD:
        check_horovod_gpus(import_horovod(), config["gpus"])
        contexts = horovod_contexts(contexts, local_rank, config["gpus"])
    lead = rank == 0
    if not lead:
        log = lambda *args: None  # noqa: E731
    make_sure(config["batch_size"] % len(contexts) == 0, "--batch-size %d must be a multiple "
              "of the %d devices", config["batch_size"], len(contexts))
    if not config["gpus"]:
        check_memory(config["batch_size"], compute_size, len(contexts),
                     available_memory())
    run_dir = RunDirectory(config["out"])
    resumed = resume_point(run_dir, config, lead)
    own_model_spec = pretrained_own_model_spec(config["pretrained"])
    own = augments(own_model_spec)
    data = Data(config, rank, workers, raw=rescales_inside(own_model_spec),
                augment=pipeline_augments(config, own))
    if own:
        log("%s: the model augments its images (%s)%s" % (
            PROG, ", ".join(own), "; the pipeline's random crop and flip are off"
            if not data.augment else "; the pipeline's random crop and flip too"))
    num_classes = config["num_classes"] or len(data.classes)
    make_sure(num_classes == len(data.classes), "--num-classes %d but the data has %d classes "
              "(%s)", num_classes, len(data.classes), ", ".join(data.classes[:6]))
    if config["amp"]:            # float16 on GPUs; AMP's CPU type is bfloat16
        from mxnet.contrib import amp
        amp.init(target_dtype="float16" if config["gpus"] else "bfloat16")
    export_spec = None
    padding = config.get("channel_padding", "auto")        # auto: a CPU's choice
    block = channel_block("off" if config["gpus"] and padding == "auto" else padding)
    if own_model_spec:
        net, head_loaded, export_spec, shapes = build_own_model_network(
            own_model_spec, num_classes, tuple(config["input_shape"]), contexts,
            config["pretrained"], config["pretrained_epoch"], config["seed"], config["freeze_bn"],
            block)
    else:
        net, head_loaded, shapes = build_network(
            num_classes, model_input_shape(config), contexts, config["pretrained"],
            config["pretrained_epoch"], config["seed"], config["freeze_bn"], block)
    if head_loaded:
        keep_head_classes(data, config["pretrained"])
    history, start_epoch, best = [], 0, None
    if resumed:
        start_epoch, record = resumed
        shapes.load_params(net, run_dir.epoch_file(start_epoch, "params"))
        history, best = record["history"], record["best"]
        start_epoch += 1
        log("%s: resuming from epoch %d of %s" % (PROG, start_epoch - 1, run_dir.path))
    else:
        shard = " (on each of %d workers)" % workers if workers > 1 else ""
        log("%s: %d classes, %d training%s / %d validation images, %s, head %s" % (
            PROG, num_classes, data.n_train, shard, data.n_val, ", ".join(map(str, contexts)),
            "kept" if head_loaded else "new"))
    check_finite_start(net, contexts[0], run_dir.epoch_file(start_epoch - 1, "params")
                       if resumed else "--pretrained %s" % config["pretrained"])
    if shapes:
        log("%s: channels padded to oneDNN's block of %d for speed (%d parameters; "
            "checkpoints keep Keras' shapes)" % (PROG, block, len(shapes.padded)))
    k = min(5, num_classes)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    steps_per_epoch = len(data.train_sampler)
    pretrained_meta = read_meta(config["pretrained"]) if config["pretrained"] else Meta()
    keras2 = Keras2Variance(net) if written_by_keras2(pretrained_meta) else None
    if keras2:
        log("%s: Keras 2 wrote the model: %d BatchNorm layers average the Bessel-corrected "
            "batch variance, as its fused BatchNorm does" % (PROG, len(keras2)))
    frozen = frozen_layers(pretrained_meta, config.get("trainable_from"))
    frozen_params = frozen_parameters(net, frozen)
    if frozen:
        log("%s: %d layers frozen (%d parameters): %s" % (
            PROG, len(frozen), len(frozen_params),
            "saved non-trainable in the Keras file" if not config.get("trainable_from")
            else "before %s" % config["trainable_from"]))
    trainer = make_trainer(trainable_params(net, _phase(config, start_epoch) == "head",
                                            frozen_params),
                           run_optimizer(config), kvstore, config["amp"])
    if config["amp"]:
        from mxnet.contrib import amp
        amp.init_trainer(trainer)
    if resumed:
        shapes.load_states(trainer, run_dir.epoch_file(start_epoch - 1, "states"))
    source = pretrained_meta.source
    for epoch in range(start_epoch, config["epochs"]):
        phase = _phase(config, epoch)
        trainable_params(net, phase == "head", frozen_params)
        if own_model_spec:     # a frozen base runs in inference mode; the head trains
            set_base_inference(net, phase == "head" or config["freeze_bn"] or
                               base_called_in_inference(own_model_spec, source))
        freeze_batchnorm(net, frozen)           # as Keras runs a non-trainable BatchNorm
        row = _train_epoch(net, trainer, loss_fn, data, contexts, config, epoch,
                           steps_per_epoch, k, phase, bool(own_model_spec), shapes, rank,
                           keras2.apply if keras2 else None)
        dump_bn_statistics(net, epoch, rank, "before", shapes)        # probes for tests only
        average_bn_statistics(net, contexts, kvstore)
        dump_bn_statistics(net, epoch, rank, "after", shapes)
        dump_parameters(net, epoch, rank, shapes)
        if data.val_loader is not None:
            val = evaluate(net, data.val_loader, loss_fn, contexts, k)
            row.update(val_loss=val.loss, val_top1=val.top1, val_topk=val.topk)
            log("epoch %d: train %s | val %s" % (epoch, _fmt(Counts(
                row["train_loss"], row["train_top1"], row["train_topk"], 0)), _fmt(val)))
        else:
            log("epoch %d: train %s" % (epoch, _fmt(Counts(
                row["train_loss"], row["train_top1"], row["train_topk"], 0))))
        history.append(row)
        score = row.get("val_top1", row["train_top1"])
        if best is None or score > best["score"]:
            best = {"epoch": epoch, "score": score}
        if lead:
            run_dir.save_epoch(epoch, net, trainer, {
                "epoch": epoch, "metrics": row, "config": config, "classes": data.classes,
                "history": history, "best": best, "workers": workers}, shapes)
            fault_point("epoch-%d:checkpoint-written" % epoch)
            run_dir.write_best(best["epoch"], history[best["epoch"]])
            run_dir.prune(best["epoch"])
            run_dir.write_csv(history)
            run_dir.plot_curves(history, "%s: %s" % (PROG, os.path.basename(
                os.path.abspath(config["out"]))))     # the run's name, not where it lives
        if config["stop_after"] is not None and epoch >= config["stop_after"] \
                and epoch + 1 < config["epochs"]:
            log("%s: stopped after epoch %d as asked; continue with --resume" % (PROG, epoch))
            return run_dir, history, best
    if lead:
        export_best(run_dir, best["epoch"], num_classes, config, data.classes, history,
                    export_spec, frozen, pretrained_meta.source)
        if data.val_set is not None:
            report = evaluate_export(run_dir, data.val_set, config, log)
            log("%s: the export on the %d validation images: top-1 %.4f, top-%d %.4f, loss "
                "%.4f, ECE %.4f; per class and confusion matrix in %s, %s" % (
                    PROG, report["images"], report["top1"], report["top_k"], report["top5"],
                    report["loss"], report["ece"], run_dir.file("evaluation.json"),
                    run_dir.file("evaluation")))
    scored_on = "validation" if data.val_loader is not None else \
        "training (no validation data: --val or --val-split)"
    log("best epoch %d (%s top-1 %.3f); exported %s-symbol.json, -0000.params, "
        "-labels.txt; curves %s" % (best["epoch"], scored_on, best["score"],
                                    run_dir.file(EXPORT_NAME), run_dir.file("curves.png")))
    return run_dir, history, best


def _train_epoch(net, trainer, loss_fn, data, contexts, config, epoch, steps_per_epoch, k,
                 phase, train_mode=False, shapes=None, rank=0, after_backward=None):
    """One epoch; in training mode in the ``all`` phase, or with ``train_mode``
    (an own model, whose frozen base is put in inference mode by itself);
    ``shapes``: a padded network's ShapeMap.  Each step seeds the generator Dropout and
    augmentation draw from (``seed_step``): a resumed run draws what the whole run would.
    ``after_backward``: called after each backward pass (``Keras2Variance.apply``)."""
    data.train_sampler.set_epoch(epoch)
    meter, loss_sum, top1, topk, n = Throughput(), 0.0, 0, 0, 0
    train_mode = train_mode or phase == "all"
    bar = progress(data.train_loader, total=steps_per_epoch, unit="batch",
                   desc="epoch %d/%d" % (epoch + 1, config["epochs"]))
    steps_left = steps_per_epoch * (config["epochs"] - epoch)       # in the run, this one on
    lr = config["lr"]
    for i, (x, y) in enumerate(bar):
        lr = learning_rate(epoch * steps_per_epoch + i, steps_per_epoch, config["epochs"],
                           config["lr"], config["warmup_epochs"], config["lr_schedule"],
                           config["lr_steps"], config["lr_factor"])
        trainer.set_learning_rate(lr)
        seed_step(config["seed"], epoch, i, contexts, rank)
        losses, outputs = train_step(net, trainer, loss_fn, x, y, contexts, train_mode,
                                     config["amp"], shapes, after_backward)
        hits1, hitsk = count_correct(outputs, y.asnumpy(), k)
        batch_loss = float(losses.sum())
        check_finite_loss(batch_loss, epoch, i, lr)
        loss_sum, top1, topk, n = loss_sum + batch_loss, top1 + hits1, topk + hitsk, \
            n + len(losses)
        meter.add(len(losses))
        run_eta = (steps_left - i - 1) * (time.perf_counter() - meter.start) / (i + 1)
        bar.set_postfix_str("loss %.3f, %.1f images/s, run ETA %s" % (
            loss_sum / n, meter.rate, bar.format_interval(run_eta)), refresh=False)
    bar.close()
    return {"epoch": epoch, "phase": phase, "lr": lr, "train_loss": loss_sum / n,
            "train_top1": top1 / n, "train_topk": topk / n, "images_per_s": meter.rate,
            "seconds": time.perf_counter() - meter.start}


def _main(argv):
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    run_finetune(config)
    return 0


def main(argv=None):
    return run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
