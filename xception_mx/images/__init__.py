"""Images to the network's input, one decoding path for every command.

``decode.py``: image files (and PIL images, pixel arrays) to pixels at the network's size and
channels, through one grayscale / RGB / RGBA conversion (``to_channels``); ``convention.py``:
the input convention (Keras' ``x / 127.5 - 1`` or raw pixels, NCHW float32) and what a
checkpoint's meta says of it; ``transforms.py``: the transforms to the input size (Keras'
resize, the default; Pillow's; the centre crop) and training's random resized crop;
``sources.py``: labelled image folders and RecordIO files; ``datasets.py``: Gluon datasets,
samplers and loaders of training and evaluation.

The names of ``xception_mx.training.data`` and ``xception_mx.evaluation.data`` of 0.2, which
are this package now, are importable from here.
"""
from xception_mx.images.convention import (input_convention, network_input,  # noqa: F401
                                           preprocess_input, raw_pixels)
from xception_mx.images.datasets import (EpochBatchSampler,  # noqa: F401
                                         EvaluationImages, ImageDataset, loader, make_loader,
                                         sample_rng)
from xception_mx.images.decode import (IMAGE_SUFFIXES, PIL_MODES, RESAMPLE,  # noqa: F401
                                       check_images, decodable, image_files, load_image,
                                       load_images, to_channels)
from xception_mx.images.sources import (FolderSource, RecordSource,  # noqa: F401
                                        labels_file_of_rec, open_source, scan_image_folder,
                                        split_indices)
from xception_mx.images.transforms import (CROP_RATIO, DEFAULT_TRANSFORM,  # noqa: F401
                                           EVAL_CROP_FRACTION, TRANSFORMS, center_crop,
                                           keras_resize, random_resized_crop, to_input_size)
