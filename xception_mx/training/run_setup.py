"""What a fine-tuning run is made of, checked before it starts: the
configuration (``config_from_args``, ``check_config``), a memory guard for
batches that cannot fit, and the data (``Data``: training and validation sets,
loaders, shards)."""
import math
import os

from xception_mx.checkpoint.labels import labels_path, read_labels
from xception_mx.checkpoint.meta import Meta
from xception_mx.checkpoint.reading import check_finite, keras_file_hint, read_meta
from xception_mx.cpu import BF16_FLAGS, why_no_bf16
from xception_mx.errors import InputError, make_sure
from xception_mx.model.own_model import branches, last_dense, output_kind
from xception_mx.training.callbacks import check_callbacks, parse_plateau
from xception_mx.training.frozen import frozen_layers
from xception_mx.training.own_model_training import is_binary_head, is_multilabel_head
from xception_mx.training.recipe.file_recipe import read_recipe
from xception_mx.training.recipe.resolve import resolve_recipe
from xception_mx.model.own_model_inputs import base_input_size, check_model_input
from xception_mx.images.datasets import EpochBatchSampler, ImageDataset, make_loader
from xception_mx.images.labels_csv import LabelsCsvSource
from xception_mx.images.sources import open_source, split_indices
from xception_mx.training.distributed.devices import HOROVOD


# Training memory measured here (batch 8 at 299x299: about 2.7 GB peak): about 1.2 GB
# for the process and the parameters, and 0.2 GB per image of 299x299, growing
# with the pixel count.  A guard against a batch that cannot fit, not a model.
BASE_TRAIN_BYTES = 1.2e9
TRAIN_BYTES_PER_IMAGE_299 = 0.2e9


def available_memory():
    """Bytes the kernel reports as available (``MemAvailable``), or ``None``."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(batch_size, input_shape, devices, available):
    """Refuse a batch that cannot fit in memory, suggesting one that can (CPU)."""
    if available is None:
        return
    per_image = TRAIN_BYTES_PER_IMAGE_299 * input_shape[0] * input_shape[1] / 299.0 ** 2
    need = BASE_TRAIN_BYTES * devices + per_image * batch_size
    if need > available:
        fits = int((available - BASE_TRAIN_BYTES * devices) // per_image)
        fits -= fits % devices
        raise InputError("--batch-size %d at %dx%d needs about %.1f GB of memory, %.1f GB are "
                         "available; try --batch-size %d or less" % (
                             batch_size, input_shape[0], input_shape[1], need / 1e9,
                             available / 1e9, max(fits, devices)))


def config_from_args(args):
    """The run configuration as JSON-ready data (stored with every checkpoint)."""
    config = {k: v for k, v in vars(args).items()}
    meta = read_meta(args.pretrained) if args.pretrained else Meta()
    config["input_shape"] = list(args.input_shape or meta.input_size())
    config["channels"] = meta.channels      # images decode to as many
    config["recipe_line"] = resolve_file_recipe(config, meta, "--pretrained %s"
                                                % args.pretrained)   # recorded with each epoch
    if config.get("reduce_lr_on_plateau"):
        config["reduce_lr_on_plateau"] = parse_plateau(config["reduce_lr_on_plateau"])
    try:
        config["lr_steps"] = [float(e) for e in args.lr_steps.split(",") if e.strip()]
    except ValueError:
        raise InputError("--lr-steps %s: expected comma-separated epochs, e.g. 30,60"
                         % args.lr_steps)
    return config



def resolve_file_recipe(config, meta, where):
    """Resolve ``config``'s recipe (``recipe.resolve``) from its flags, the compile config the
    meta recorded and the defaults; returns the line that says what trains."""
    binary = meta.is_own_model and (is_binary_head(meta.own_model_spec) or
                                    is_multilabel_head(meta.own_model_spec))
    recipe = read_recipe(meta.recipe, "%s (the Keras file's compile config)" % where,
                         head_output(meta), meta.keras_version, binary) if meta.recipe else None
    return resolve_recipe(config, recipe, binary)


def head_output(meta):
    """What the pretrained model outputs: ``probabilities`` (a softmax) or ``logits``..."""
    if meta.is_own_model:
        return output_kind(meta.own_model_spec)
    return "probabilities" if meta.model.get("classifier_activation", "softmax") == "softmax" \
        else "logits"


def check_config(config):
    """Refuse a configuration that cannot run; returns the size the base
    computes at (an own model's own ``Resizing`` sets it)."""
    for key in ("epochs", "batch_size"):
        make_sure(config[key] >= 1, "--%s must be >= 1, got %s", key.replace("_", "-"),
                  config[key])
    make_sure(config["lr"] > 0, "--lr must be > 0, got %s", config["lr"])
    make_sure(0 <= config["val_split"] < 1, "--val-split must be in [0, 1), got %s",
              config["val_split"])
    make_sure(not (config["val"] and config["val_split"]), "--val and --val-split exclude "
              "each other")
    check_callbacks(config, bool(config["val"] or config["val_split"]))
    make_sure(0 < config["min_crop"] <= 1, "--min-crop must be in (0, 1], got %s",
              config["min_crop"])
    make_sure(config["workers"] >= 0, "--workers must be >= 0")
    make_sure(config.get("stop_after") is None or config["stop_after"] >= 1, "--stop-after "
              "names an epoch, counted from 1 (as the bar counts them); got %s",
              config.get("stop_after"))
    make_sure(0 <= config["freeze_base_epochs"] <= config["epochs"],
              "--freeze-base-epochs must be between 0 and --epochs (%d)", config["epochs"])
    meta = Meta()
    if config["pretrained"]:
        path = "%s-%04d.params" % (config["pretrained"], config["pretrained_epoch"])
        make_sure(os.path.isfile(path), "--pretrained: %s: no such file%s", path,
                  keras_file_hint(config["pretrained"]))
        meta = read_meta(config["pretrained"])
        meta.require_keras_shaped(config["pretrained"], "--pretrained")
    spec = meta.own_model_spec if meta.is_own_model else None
    if config.get("trainable_from"):
        make_sure(config["pretrained"], "--trainable-from chooses layers of a --pretrained "
                  "checkpoint")
        frozen_layers(meta, config["trainable_from"], "--pretrained %s" % config["pretrained"])
    if config.get("labels_csv"):
        make_sure(spec is not None and is_multilabel_head(spec), "--labels-csv trains a "
                  "multi-label classifier: --pretrained must be a model whose head ends in "
                  "Dense(k, activation='sigmoid')")
        make_sure(not config.get("class_weight"), "--class-weight weights single-label "
                  "classes; multi-label training (--labels-csv) does not take it")
    elif spec is not None and is_multilabel_head(spec):
        last = last_dense(spec)[1]
        raise InputError("--pretrained %s: the head ends in %d sigmoid units ('%s'), a "
                         "multi-label classifier, not a single-label one: train it with "
                         "--labels-csv FILE (path,label;label;... per image)" % (
                             config["pretrained"], last["units"], last["name"]))
    outputs = branches(spec) if spec else []
    make_sure(not outputs, "--pretrained %s: the model has %d outputs (%s); xception-finetune "
              "trains single-output classifiers (training several heads is not supported)",
              config["pretrained"], len(outputs), ", ".join(b["name"] for b in outputs))
    try:
        size = base_input_size(spec, check_model_input(spec, tuple(config["input_shape"])))
    except ValueError as exc:
        raise InputError("--input-shape: %s" % exc)
    if config["amp"] and not config["gpus"]:
        no_bf16 = why_no_bf16()
        make_sure(not no_bf16, "--amp on CPUs trains in bfloat16, which needs oneDNN's AVX-512 "
                  "kernels (%s): %s; train without --amp", ", ".join(BF16_FLAGS), no_bf16)
    make_sure(os.environ.get("DMLC_ROLE") != "worker" or config["kvstore"].startswith("dist"),
              "started by xception-launch as one worker of a parameter-server job, but "
              "--kvstore is %s: add --kvstore dist_sync (or dist_device_sync), or run "
              "xception-finetune without the launcher", config["kvstore"])
    if config["kvstore"].startswith("dist"):
        make_sure(os.environ.get("DMLC_ROLE") == "worker", "--kvstore %s: start the job with "
                  "xception-launch (no DMLC_ROLE=worker in the environment)", config["kvstore"])
    if config["kvstore"] == HOROVOD:
        make_sure("HOROVOD_RANK" in os.environ, "--kvstore horovod: start the job with "
                  "horovodrun -np N --gloo ... (no HOROVOD_RANK in the environment)")
        make_sure(not config["amp"], "--amp with --kvstore horovod is not supported")
        make_sure(not config["cpus"] or config["cpus"] == 1, "--kvstore horovod: one device "
                  "per process (--cpus %d); start more processes with horovodrun -np",
                  config["cpus"])
    return size


def open_training_source(config, path=None):
    """The training source (``path``: the validation one) of a run: a labels CSV's with
    ``--labels-csv`` (a validation CSV beside it; images under TRAIN, if given), else a class
    folder or ``.rec``."""
    if not config.get("labels_csv"):
        return open_source(path or config["train"])
    make_sure(path is None or str(path).endswith(".csv"), "--val %s: with --labels-csv, a "
              "labels CSV of the validation images (path,label;label;...)", path)
    return LabelsCsvSource(path or config["labels_csv"], config["train"])


class Data:
    """Training and validation sets, loaders and class names; on a parameter
    server each worker trains on its shard (every ``workers``-th image, cut to
    the same length on every worker, as ``dist_sync`` needs equal step counts)."""

    def __init__(self, config, rank=0, workers=1, raw=False, augment=True):
        size = tuple(config["input_shape"])
        train_source = open_training_source(config)
        self.classes = train_source.classes
        self.multilabel = getattr(train_source, "multilabel", False)
        indices = range(len(train_source))
        if config["val"]:
            val_source = open_training_source(config, config["val"])
            make_sure(val_source.classes == self.classes, "--val %s has classes %s, TRAIN has "
                      "%s", config["val"], val_source.classes[:5], self.classes[:5])
            train_idx, val_idx = list(indices), list(range(len(val_source)))
        elif config["val_split"]:
            val_source = train_source
            train_idx, val_idx = split_indices(
                [train_source.label(i) for i in indices] if not self.multilabel else
                [0] * len(train_source), config["val_split"], config["seed"],
                None if self.multilabel else train_source.classes)
        else:
            val_source, train_idx, val_idx = None, list(indices), []
        self.train_labels = [train_source.label(i) for i in train_idx]   # every worker's
        # equal shards: in dist_sync every worker must take as many steps
        train_idx = train_idx[rank::workers][:len(train_idx) // workers]
        batch = config["batch_size"]
        make_sure(len(train_idx) >= batch, "%s: %d training images, fewer than one batch "
                  "(--batch-size %d)", config.get("labels_csv") or config["train"], len(train_idx),
                  batch)
        self.train_set = ImageDataset(train_source, train_idx, size, True, config["seed"],
                                      config["min_crop"], raw, config.get("channels", 3),
                                      augment)
        self.augment = augment
        self.train_sampler = EpochBatchSampler(len(train_idx), batch, True, config["seed"],
                                               drop_last=True)
        self.train_loader = make_loader(self.train_set, self.train_sampler, config["workers"])
        self.val_loader = self.val_set = None
        if val_source is not None:
            self.val_set = ImageDataset(val_source, val_idx, size, False, raw=raw,
                                        channels=config.get("channels", 3))
            self.val_loader = make_loader(self.val_set, EpochBatchSampler(len(val_idx), batch,
                                                                          False),
                                          config["workers"])
        self.n_train, self.n_val = len(train_idx), len(val_idx)

    def use_class_order(self, names, where):
        """Train toward a kept head's classes: ``names`` in the model's order (``where`` names
        the file they come from), the same set as the data's folder or record names."""
        unknown = [c for c in self.classes if c not in names]
        absent = [c for c in names if c not in self.classes]
        make_sure(not unknown and len(names) == len(self.classes), "the data's classes differ "
                  "from those of the head kept from %s: %s not among them, %s not in the data; "
                  "name the data's classes as the checkpoint's", where,
                  ", ".join(unknown[:5]) or "none", ", ".join(absent[:5]) or "none")
        class_of_label = [names.index(c) for c in self.classes]
        for dataset in (self.train_set, self.val_set):
            if dataset is not None:
                dataset.class_of_label = class_of_label
        self.classes = list(names)


PIPELINE_AUGMENTATION = ("auto", "on", "off")


def pipeline_augments(config, model_augmentation):
    """Whether the data pipeline crops and flips at random: ``--pipeline-augmentation``, by
    default (``auto``) unless the model brings augmentation layers of its own
    (``model_augmentation``: their names), which a user who built them into the model
    expects to act alone, as in Keras."""
    choice = config.get("pipeline_augmentation", "auto")
    return choice == "on" or (choice == "auto" and not model_augmentation)


def check_finite_start(net, context, source):
    """Refuse to train from parameters holding NaN or infinity."""
    check_finite({n: p.data(context) for n, p in net.collect_params().items()}, source,
                 "training from it gives NaN")


def check_finite_loss(loss, epoch, batch, lr):
    """Stop a run whose loss is no longer a number, before it writes the epoch."""
    make_sure(math.isfinite(loss), "epoch %d, batch %d: the training loss is %s: the run "
              "diverged at learning rate %g; start again with a lower --lr (epoch %d is not "
              "written)", epoch, batch, loss, lr, epoch)


def keep_head_classes(data, prefix):
    """A kept head's classes are the checkpoint's, in its order, where it names them
    (``PREFIX-labels.txt``, or its meta's ``classes``): each image trains toward its own
    class, and the export keeps that order.  Unnamed (a plain conversion's ``class N``, or
    ImageNet's 1000), the data's sorted folder names number them, as before."""
    path = labels_path(prefix)
    if os.path.exists(path):
        data.use_class_order(read_labels(path), path)
        return
    named = read_meta(prefix).class_names
    if named:
        data.use_class_order(list(named), prefix + "-meta.json")
