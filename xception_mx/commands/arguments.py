"""The options several commands share, declared once: which checkpoint epoch, overwriting,
channel padding, precision, oneDNN's instruction sets and the images' transform."""
from xception_mx.cpu import ISA_CHOICES
from xception_mx.images.transforms import DEFAULT_TRANSFORM, TRANSFORMS
from xception_mx.model.padding import PADDING_CHOICES
from xception_mx.serving.plan import OWN_PRECISION, PRECISIONS


def add_epoch(parser, help="which PREFIX-%%04d.params"):
    parser.add_argument("--epoch", type=int, default=0, help=help)


def add_force(parser, help="overwrite existing outputs"):
    parser.add_argument("--force", action="store_true", help=help)


def add_channel_padding(parser, help="pad channel counts to oneDNN's block of 16 (the same "
                        "function); auto: where that is faster (Intel CPUs with AVX-512; for "
                        "bf16, any CPU with AVX-512)"):
    parser.add_argument("--channel-padding", choices=PADDING_CHOICES, default="auto", help=help)


def add_precision(parser, help, default=OWN_PRECISION, own=True):
    """``--precision``: fp32, bf16, int8, and with ``own`` ``auto`` (the checkpoint's own)."""
    choices = ((OWN_PRECISION,) if own else ()) + PRECISIONS
    parser.add_argument("--precision", choices=choices, default=default, help=help)


def add_onednn_isa(parser):
    parser.add_argument("--onednn-isa", choices=ISA_CHOICES, default="auto",
                        help="the instruction sets oneDNN may use: avx512_mic, avx2 cap "
                             "fp32 to older kernels that take one layout throughout, so the "
                             "depthwise reorders go; amx lets int8 and bf16 run on Intel's "
                             "AMX kernels, which oneDNN leaves out unless asked; auto: where "
                             "that is faster (the cap on AMD CPUs with AVX-512, AMX where the "
                             "CPU has it), or DNNL_MAX_CPU_ISA if set")


def add_transform(parser):
    """``--transform``: how images are brought to the input size (``images.transforms``)."""
    parser.add_argument("--transform", choices=TRANSFORMS, default=DEFAULT_TRANSFORM,
                        help="how images reach the input size.  keras: as Keras' "
                             "image_dataset_from_directory (TF's JPEG decoding and bilinear "
                             "resize of the whole image), what model.predict and "
                             "model.evaluate saw; load_img: keras.utils.load_img(target_size, "
                             "interpolation='bilinear'), Pillow's resize; crop: "
                             "xception-finetune's validation, resize then centre crop 87.5%% "
                             "(default: %(default)s)")


def add_labels(parser):
    """``--labels``: the class names, one per line, instead of the checkpoint's."""
    parser.add_argument("--labels", metavar="FILE",
                        help="class names, one per line (default: PREFIX-labels.txt, or "
                             "ImageNet's for 1000 classes)")
