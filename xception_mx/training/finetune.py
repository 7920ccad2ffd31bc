"""A fine-tuning run, step by step: join the job and its devices, open the data, build the
network, make the trainer, train the epochs.  ``xception-finetune`` (``commands.finetune``)
runs it, then exports the best epoch and scores it.

The run lives in ``--out``; see ``run_dir`` for its files and ``train`` for the design
decisions (several devices, BN statistics, frozen BN, plain graph).  With a ``dist_*``
kvstore or Horovod this process is one worker: it trains on its shard, and only rank 0 logs
and writes checkpoints.
"""
import time

from xception_mx.checkpoint.meta import Meta
from xception_mx.checkpoint.reading import read_meta
from xception_mx.errors import make_sure
from xception_mx.faults import dump_bn_statistics, dump_parameters, fault_point
from xception_mx.images.convention import rescales_inside
from xception_mx.model.training_only import augments, seed_step
from xception_mx.outputs import output_folder
from xception_mx.progress import progress
from xception_mx.training.callbacks import start_state
from xception_mx.training.distributed.devices import (HOROVOD, check_horovod_gpus,
                                                      horovod_contexts, import_horovod,
                                                      join_job, parse_contexts)
from xception_mx.training.epoch_end import PROG, end_epoch
from xception_mx.training.export import model_input_shape
from xception_mx.training.tensorboard import TensorBoardLog
from xception_mx.training.frozen import freeze_batchnorm, frozen_layers, frozen_parameters
from xception_mx.training.keras2_statistics import Keras2Variance, written_by_keras2
from xception_mx.training.recipe.losses import ClassWeighted, class_weights, loss_block
from xception_mx.training.recipe.optimizers import run_optimizer
from xception_mx.training.recipe.regularization import file_regularization
from xception_mx.training.recipe.resolve import run_loss
from xception_mx.training.own_model_training import (base_called_in_inference,
                                                     build_own_model_network,
                                                     pretrained_own_model_spec,
                                                     set_base_inference)
from xception_mx.training.padded_training import channel_block
from xception_mx.training.run_dir import RunDirectory, resume_point
from xception_mx.training.run_setup import (Data, available_memory, check_config,
                                            check_finite_loss, check_finite_start,
                                            check_memory, keep_head_classes, pipeline_augments)
from xception_mx.training.train import (Throughput, average_bn_statistics, build_network,
                                        count_correct, learning_rate, make_trainer, train_step,
                                        trainable_params)


class Run:
    """What a fine-tuning run holds, filled by its steps in order: the job (``config``,
    ``contexts``, ``kvstore``, ``rank``, ``workers``, ``lead``, ``log``: silent on the other
    ranks, ``run_dir``, ``resumed``), the data (``data``, ``num_classes``, ``own_spec``: the
    own model's spec or ``None``), the network (``net``, ``shapes``, ``block``,
    ``export_spec``), the training (``trainer``, ``loss_fn``, ``frozen``,
    ``frozen_params``, ``keras2``, ``source``, ``recipe``, ``batchnorm``, ``regularizers``,
    ``regularization``, ``val_loss_fn``) and its progress (``history``, ``best``,
    ``start_epoch``: the index, from 0, of the next epoch to train, ``callbacks``: Keras'
    callbacks' state, ``stopped``, ``finished``, ``tensorboard``: the event files' writers
    or ``None``)."""

    def __init__(self, config, log):
        self.config, self.log = config, log
        self.history, self.best, self.start_epoch, self.finished = [], None, 0, False
        self.callbacks, self.stopped = start_state(), False

    def phase(self, epoch):
        """``head`` while only the head trains (``--freeze-base-epochs``), then ``all``."""
        return "head" if epoch < self.config["freeze_base_epochs"] else "all"


def run_finetune(config, log=print):
    """Run (or resume) a fine-tuning until its last epoch (``Run.finished``) or
    ``--stop-after``; return the ``Run``."""
    run = Run(config, log)
    join(run)
    open_data(run)
    build(run)
    make_training(run)
    train_epochs(run)
    if run.tensorboard:
        run.tensorboard.close()
    return run


def join(run):
    """The devices, this process's place in the job, the memory check and the run folder."""
    config = run.config
    compute_size = check_config(config)
    run.run_dir = RunDirectory(output_folder(config["out"], "--out"))    # before any work
    board = output_folder(config.get("tensorboard"), "--tensorboard")
    contexts = parse_contexts(config["gpus"], config["cpus"])
    run.kvstore, run.rank, run.workers, local_rank = join_job(config["kvstore"])
    if run.kvstore == HOROVOD:
        check_horovod_gpus(import_horovod(), config["gpus"])
        contexts = horovod_contexts(contexts, local_rank, config["gpus"])
    run.contexts, run.lead = contexts, run.rank == 0
    if not run.lead:
        run.log = lambda *args: None  # noqa: E731
    make_sure(config["batch_size"] % len(contexts) == 0, "--batch-size %d must be a multiple "
              "of the %d devices", config["batch_size"], len(contexts))
    if not config["gpus"]:
        check_memory(config["batch_size"], compute_size, len(contexts), available_memory())
    run.resumed = resume_point(run.run_dir, config, run.lead)
    if config["resume"] and not run.resumed:
        run.log("%s: --resume: %s holds no complete epoch yet; starting the run from its "
                "first epoch" % (PROG, config["out"]))
    run.tensorboard = TensorBoardLog(board) if board and run.lead else None


def open_data(run):
    """The training (and validation) data, decoded as the model takes it."""
    config = run.config
    run.own_spec = pretrained_own_model_spec(config["pretrained"])
    own = augments(run.own_spec)
    run.data = Data(config, run.rank, run.workers, raw=rescales_inside(run.own_spec),
                    augment=pipeline_augments(config, own))
    if own:
        run.log("%s: the model augments its images (%s)%s" % (
            PROG, ", ".join(own), "; the pipeline's random crop and flip are off"
            if not run.data.augment else "; the pipeline's random crop and flip too"))
    run.num_classes = config["num_classes"] or len(run.data.classes)
    make_sure(run.num_classes == len(run.data.classes), "--num-classes %d but the data has %d "
              "classes (%s)", run.num_classes, len(run.data.classes),
              ", ".join(run.data.classes[:6]))


def build(run):
    """The network from the pretrained checkpoint, or the resumed epoch's parameters."""
    config, data = run.config, run.data
    if config["amp"]:            # float16 on GPUs; AMP's CPU type is bfloat16
        from mxnet.contrib import amp
        amp.init(target_dtype="float16" if config["gpus"] else "bfloat16")
    run.export_spec = None
    run.block = channel_block(config.get("channel_padding", "auto"), bool(config["gpus"]))
    pretrained = (config["pretrained"], config["pretrained_epoch"], config["seed"],
                  config["freeze_bn"], run.block)
    if run.own_spec:
        run.net, head_loaded, run.export_spec, run.shapes = build_own_model_network(
            run.own_spec, run.num_classes, tuple(config["input_shape"]), run.contexts,
            *pretrained)
    else:
        run.net, head_loaded, run.shapes = build_network(
            run.num_classes, model_input_shape(config), run.contexts, *pretrained)
    if head_loaded:
        keep_head_classes(data, config["pretrained"])
    if run.resumed:                 # epoch N's files: N epochs done, the next index is N
        epoch, record = run.resumed
        run.shapes.load_params(run.net, run.run_dir.epoch_file(epoch, "params"))
        run.history, run.best, run.start_epoch = record["history"], record["best"], epoch
        run.callbacks = record.get("callbacks") or start_state()
        run.log("%s: resuming after epoch %d of %s" % (PROG, run.start_epoch, run.run_dir.path))
    else:
        shard = " (on each of %d workers)" % run.workers if run.workers > 1 else ""
        run.log("%s: %d classes, %d training%s / %d validation images, %s, head %s" % (
            PROG, run.num_classes, data.n_train, shard, data.n_val,
            ", ".join(map(str, run.contexts)), "kept" if head_loaded else "new"))
    check_finite_start(run.net, run.contexts[0],
                       run.run_dir.epoch_file(run.start_epoch, "params") if run.resumed
                       else "--pretrained %s" % config["pretrained"])
    if run.shapes:
        run.log("%s: channels padded to oneDNN's block of %d for speed (%d weight arrays; "
                "checkpoints keep Keras' shapes)" % (PROG, run.block, len(run.shapes.padded)))


def make_training(run):
    """The loss, Keras 2's BatchNorm statistics, the frozen layers and the trainer (its
    states from the resumed epoch)."""
    config = run.config
    run.val_loss_fn = loss_block(run_loss(config), run.num_classes)
    run.loss_fn = class_weighted(run, run.val_loss_fn)
    if config.get("recipe_line"):
        run.log("%s: %s" % (PROG, config["recipe_line"]))
    meta = read_meta(config["pretrained"]) if config["pretrained"] else Meta()
    run.source, run.recipe, run.batchnorm = meta.source, meta.recipe, meta.batchnorm
    run.regularizers = meta.regularizers
    run.regularization = regularization(run, meta)
    run.keras2 = Keras2Variance(run.net) if written_by_keras2(meta) else None
    if run.keras2:
        run.log("%s: Keras 2 wrote the model: %d BatchNorm layers average the Bessel-corrected "
                "batch variance, as its fused BatchNorm does" % (PROG, len(run.keras2)))
    run.frozen = frozen_layers(meta, config.get("trainable_from"))
    run.frozen_params = frozen_parameters(run.net, run.frozen)
    if run.frozen:
        run.log("%s: %d layers frozen (%d weight arrays): %s" % (
            PROG, len(run.frozen), len(run.frozen_params),
            "saved non-trainable in the Keras file" if not config.get("trainable_from")
            else "before %s" % config["trainable_from"]))
    trainable = trainable_params(run.net, run.phase(run.start_epoch) == "head",
                                 run.frozen_params)
    run.trainer = make_trainer(trainable, run_optimizer(config), run.kvstore, config["amp"])
    if config["amp"]:
        from mxnet.contrib import amp
        amp.init_trainer(run.trainer)
    if run.resumed:
        run.shapes.load_states(run.trainer, run.run_dir.epoch_file(run.start_epoch, "states"))


def class_weighted(run, loss):
    """The training loss weighted per class (``--class-weight``; validation's is not, as in
    Keras), or ``loss`` itself."""
    if not run.config.get("class_weight"):
        return loss
    labels, order = run.data.train_labels, run.data.train_set.class_of_label
    labels = [order[label] for label in labels] if order is not None else labels
    weights = class_weights(run.config["class_weight"], labels, run.data.classes)
    run.log("%s: class weights %s" % (PROG, ", ".join(
        "%s %.4g" % (c, w) for c, w in zip(run.data.classes, weights))))
    return ClassWeighted(loss, weights)


def regularization(run, meta):
    """The file's regularizers, acting (``--regularizers file``), or ``None``."""
    if run.config.get("regularizers", "file") != "file" or not meta.regularizers:
        return None
    acting = file_regularization(run.net, meta, run.export_spec,
                                 "--pretrained %s" % run.config["pretrained"])
    if acting is not None:
        run.log("%s: the file's regularizers act: %s" % (PROG, acting.describe()))
    return acting


def train_epochs(run):
    """Every epoch from ``start_epoch`` on: train, average BatchNorm statistics, validate,
    checkpoint; stop early after ``--stop-after``.  ``epoch`` counts from 0 inside (the
    schedule, the seeds, the phase); ``number`` from 1 everywhere a user sees it (the bar,
    the lines, the files, best.json, metrics.csv, --stop-after)."""
    config = run.config
    for epoch in range(run.start_epoch, config["epochs"]):
        number = epoch + 1
        phase = run.phase(epoch)
        trainable_params(run.net, phase == "head", run.frozen_params)
        if run.own_spec:     # a frozen base runs in inference mode; the head trains
            set_base_inference(run.net, phase == "head" or config["freeze_bn"] or
                               base_called_in_inference(run.own_spec, run.source))
        freeze_batchnorm(run.net, run.frozen)       # as Keras runs a non-trainable BatchNorm
        row = train_epoch(run, epoch, phase)
        dump_bn_statistics(run.net, number, run.rank, "before", run.shapes)  # tests' probes
        average_bn_statistics(run.net, run.contexts, run.kvstore)
        dump_bn_statistics(run.net, number, run.rank, "after", run.shapes)
        dump_parameters(run.net, number, run.rank, run.shapes)
        end_epoch(run, number, row)
        if run.stopped:
            run.log("%s: early stopping after epoch %d: the validation loss has not improved "
                    "for %d epochs; the export is epoch %d's" % (
                        PROG, number, config["early_stopping"], run.best["epoch"]))
            break
        if config["stop_after"] is not None and number >= config["stop_after"] \
                and number < config["epochs"]:
            run.log("%s: stopped after epoch %d of %d as asked; continue with --resume"
                    % (PROG, number, config["epochs"]))
            return
    run.finished = True


def train_epoch(run, epoch, phase):
    """One epoch; in training mode in the ``all`` phase, or for an own model (whose frozen
    base is put in inference mode by itself).  Each step seeds the generator Dropout and
    augmentation draw from (``seed_step``): a resumed run draws what the whole run would.
    Keras 2's moving variance is corrected after each backward pass (``Keras2Variance``)."""
    config, data = run.config, run.data
    steps_per_epoch, k = len(data.train_sampler), min(5, run.num_classes)
    data.train_sampler.set_epoch(epoch)
    meter, loss_sum, top1, topk, n = Throughput(), 0.0, 0, 0, 0
    train_mode = bool(run.own_spec) or phase == "all"
    bar = progress(data.train_loader, total=steps_per_epoch, unit="batch",
                   desc="epoch %d/%d" % (epoch + 1, config["epochs"]))
    steps_left = steps_per_epoch * (config["epochs"] - epoch)       # in the run, this one on
    lr = config["lr"]
    for i, (x, y) in enumerate(bar):
        lr = run.callbacks["plateau"]["lr"] or learning_rate(
            epoch * steps_per_epoch + i, steps_per_epoch, config["epochs"], config["lr"],
            config["warmup_epochs"], config["lr_schedule"], config["lr_steps"],
            config["lr_factor"], config.get("keras_schedule"))
        run.trainer.set_learning_rate(lr)
        seed_step(config["seed"], epoch, i, run.contexts, run.rank)
        losses, outputs = train_step(run.net, run.trainer, run.loss_fn, x, y, run.contexts,
                                     train_mode, config["amp"], run.shapes,
                                     run.keras2.apply if run.keras2 else None,
                                     run.regularization)
        fault_point("epoch-%d:step-%d" % (epoch + 1, i + 1))
        hits1, hitsk = count_correct(outputs, y.asnumpy(), k)
        batch_loss = float(losses.sum())
        check_finite_loss(batch_loss, epoch + 1, i + 1, lr)
        loss_sum, top1, topk, n = loss_sum + batch_loss, top1 + hits1, topk + hitsk, \
            n + len(losses)
        meter.add(len(losses))
        run_eta = (steps_left - i - 1) * (time.perf_counter() - meter.start) / (i + 1)
        bar.set_postfix_str("loss %.3f, %.1f images/s, run ETA %s" % (
            loss_sum / n, meter.rate, bar.format_interval(run_eta)), refresh=False)
    bar.close()
    return {"epoch": epoch + 1, "phase": phase, "lr": lr, "train_loss": loss_sum / n,
            "train_top1": top1 / n, "train_topk": topk / n, "images_per_s": meter.rate,
            "seconds": time.perf_counter() - meter.start}
