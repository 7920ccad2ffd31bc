"""``xception-pack``: write an image folder as indexed RecordIO (``.rec`` + ``.idx``).

Records hold the original encoded bytes of each image (so training on the
``.rec`` sees exactly the pixels of the folder), labelled by class index in
sorted class-name order; ``--resize N`` instead re-encodes each image with its
shorter side scaled to N (MXNet's ``pack_img``, OpenCV).  The class names go to
``OUT.labels.txt``.  All three files are written under temporary names and
renamed into place.
"""
import os

import mxnet as mx

from xception_mx.atomic import atomic_path, write_text
from xception_mx.errors import make_sure
from xception_mx.progress import progress
from xception_mx.images.sources import FolderSource, labels_file_of_rec

PROG = "xception-pack"


def pack_folder(root, out_prefix, resize=0, quality=95, force=False):
    """Pack ``root`` into ``OUT.rec``/``OUT.idx``/``OUT.labels.txt``; return
    ``(paths, number of records)``."""
    rec, idx = out_prefix + ".rec", out_prefix + ".idx"
    labels = labels_file_of_rec(rec)
    for path in (rec, idx, labels):
        make_sure(force or not os.path.exists(path), "%s: already exists; pass --force to "
                  "overwrite it", path)
    source = FolderSource(root)
    os.makedirs(os.path.dirname(os.path.abspath(rec)), exist_ok=True)
    with atomic_path(rec) as rec_tmp, atomic_path(idx) as idx_tmp:
        writer = mx.recordio.MXIndexedRecordIO(idx_tmp, rec_tmp, "w")
        for i in progress(range(len(source)), desc="packing"):
            header = mx.recordio.IRHeader(0, float(source.label(i)), i, 0)
            if resize:
                writer.write_idx(i, mx.recordio.pack_img(header, _resized(source.name(i),
                                                                          resize),
                                                         quality=quality, img_fmt=".jpg"))
            else:
                writer.write_idx(i, mx.recordio.pack(header, source.read(i)))
        writer.close()
    write_text(labels, "\n".join(source.classes) + "\n")
    return (rec, idx, labels), len(source)


def _resized(path, shorter_side):
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    height, width = img.shape[:2]
    scale = shorter_side / float(min(height, width))
    return cv2.resize(img, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)
