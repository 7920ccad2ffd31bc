"""Keras models run on NCHW inputs, batch by batch, their outputs returned as NCHW numpy."""
import numpy as np

from xception_mx.progress import progress as progress_bar


def keras_predict(model, x_nchw, batch_size=8, progress=False):
    """Keras outputs for NCHW input, returned as numpy (NCHW for feature maps; a list for a
    model with several outputs); one
    ``model.predict`` per batch, so that ``progress`` can show them."""
    outputs = []
    with progress_bar(total=len(x_nchw), desc="keras", enabled=progress,
                      step=batch_size) as bar:
        for start in range(0, len(x_nchw), batch_size):
            batch = np.transpose(x_nchw[start:start + batch_size], (0, 2, 3, 1))
            out = model.predict(np.ascontiguousarray(batch), batch_size=batch_size, verbose=0)
            outputs.append(out if isinstance(out, (list, tuple)) else [out])
            bar.update(len(batch))
    ys = [np.concatenate(parts) for parts in zip(*outputs)]
    ys = [np.transpose(y, (0, 3, 1, 2)) if y.ndim == 4 else y for y in ys]
    return ys if len(ys) > 1 else ys[0]
