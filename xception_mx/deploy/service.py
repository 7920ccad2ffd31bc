"""The service inside an archive of ``xception-export --format mms``: Multi Model Server calls
``handle(batch, context)`` with a batch of HTTP requests, each holding an image (the body) or
several (multipart form parts), and sends back per request the JSON ``xception-predict --json``
prints for it.  The checkpoint runs through ``xception_mx.load`` with the archive's settings
(``CONFIG_FILE``): the same decoding, transform, fast path and class names as
``xception-predict``.  A bad request gets a 4xx JSON error naming what is wrong; the others
of its batch are answered as usual, and the worker keeps serving."""
import http
import json
import logging
import os
import warnings

import numpy as np
from PIL import Image

from xception_mx.errors import InputError
from xception_mx.images.decode import ImageTooLarge
from xception_mx.serving.predict import json_record

CONFIG_FILE = "xception-serving.json"
IMAGE_TYPES = ("image/", "application/x-image", "application/octet-stream")
LOG = logging.getLogger("xception_mx.deploy")


class RequestError(Exception):
    """A request the service refuses: its HTTP status and the message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def read_config(model_dir):
    with open(os.path.join(model_dir, CONFIG_FILE)) as f:
        return json.load(f)


def request_parts(request, content_type_of):
    """The images of one request as ``[(name, bytes)]``: the raw body (``body``), or each
    part of a multipart form in order.  ``content_type_of(name)`` gives a part's type: an
    ``image/...`` type, ``application/x-image`` (SageMaker's), ``application/octet-stream``
    or none is taken, any other refused."""
    parts = []
    for name, value in request.items():
        kind = (content_type_of(name) or "").split(";")[0].strip().lower()
        if kind and not kind.startswith(IMAGE_TYPES):
            raise RequestError(415, "%s: content type %s: expected an image (image/jpeg, "
                                    "image/png, image/webp, application/x-image...) or "
                                    "application/octet-stream"
                               % (name, kind))
        if isinstance(value, str):
            value = value.encode("latin-1")
        parts.append((name, bytes(value or b"")))
    if not parts:
        raise RequestError(400, "no image in the request: send one as the body, or several "
                                "as multipart form parts")
    return parts


def decode_parts(model, parts):
    """The parts as the checkpoint's NCHW input; a part no image decoder reads is refused
    naming it (400), one past Pillow's pixel limit too (413: a decompression bomb)."""
    arrays = []
    for name, data in parts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                arrays.append(model.inputs([data]))
        except ImageTooLarge as exc:
            raise RequestError(413, "%s: %s" % (name, str(exc).split(": ", 1)[-1]))
        except Image.DecompressionBombWarning as exc:
            raise RequestError(413, "%s: image too large to decode (%s)" % (name, exc))
        except InputError as exc:
            raise RequestError(400, "%s: %s" % (name, str(exc).split(": ", 1)[-1]))
    return np.concatenate(arrays)


def response(parts, rows):
    """One request's answer: ``xception-predict --json``'s record of each part (``image``
    naming the part), a list of them for several parts.  ``rows``: ``Model.ranked``'s."""
    records = [json_record(name, row) for (name, _), row in zip(parts, rows)]
    return records[0] if len(records) == 1 else records


class ImageService:
    """The checkpoint of an archive's folder, loaded and warmed up once per worker."""

    def __init__(self, model_dir):
        from xception_mx.serving.runtime import Model
        config = read_config(model_dir)
        self.top = config["top"]
        self.model = Model(os.path.join(model_dir, config["prefix"]), config["precision"],
                           batch_size=config["batch_size"], transform=config["transform"])
        shape = (1, self.model.channels) + self.model.input_size
        self.model.logits(np.zeros(shape, np.float32))    # the network built before requests

    def handle(self, batch, context):
        answers, inputs, wanted = [None] * len(batch), [], []
        for k, request in enumerate(batch):
            try:
                parts = request_parts(request, lambda name, k=k: _content_type(context, k,
                                                                               name))
                inputs.append(decode_parts(self.model, parts))
                wanted.append((k, parts))
            except RequestError as exc:
                answers[k] = refuse(context, k, exc.status, str(exc))
            except Exception as exc:       # this request's alone: the batch goes on
                LOG.exception("request %d", k)
                answers[k] = refuse(context, k, 500, "the image could not be decoded (%s)"
                                    % exc)
        if inputs:
            self.answer(context, wanted, inputs, answers)
        for k in range(len(batch)):
            context.set_response_content_type(k, "application/json")
        LOG.info("answered a batch of %d requests (%d refused)", len(batch),
                 sum(a is not None and a.startswith('{"code"') for a in answers))
        return answers

    def answer(self, context, wanted, inputs, answers):
        """The requests' top classes, all in one forward pass; when that fails (an output
        that overflowed), each request alone, so that only the failing ones get a 500."""
        try:
            rows = self.model.ranked(np.concatenate(inputs), self.top)
        except InputError:
            if len(wanted) > 1:
                for one, x in zip(wanted, inputs):
                    self.answer(context, [one], [x], answers)
                return
            answers[wanted[0][0]] = refuse(context, wanted[0][0], 500, "the network's output "
                                           "for this image holds NaN or infinity")
            return
        start = 0
        for k, parts in wanted:
            answers[k] = json.dumps(response(parts, rows[start:start + len(parts)]))
            start += len(parts)


def refuse(context, k, status, message):
    """Request ``k``'s error: its status with HTTP's own phrase (MMS puts the phrase in the
    status line), the message in the JSON body."""
    LOG.warning("request %d refused (%d): %s", k, status, message)
    context.set_response_status(status, http.HTTPStatus(status).phrase, k)
    return json.dumps({"code": status, "message": message})


def _content_type(context, k, name):
    """The content type MMS read for part ``name`` of request ``k`` (none for a raw body
    whose request gave none)."""
    header = context.get_request_header(k, name)
    return header.get("content-type") if isinstance(header, dict) else None


_SERVICE = {}
# MMS's worker decodes a text/* body as UTF-8 and an application/json one as JSON before any
# handler sees it, and dies when that fails (a JPEG sent as text/plain): read per request,
# so set here, at load, it makes every body reach the service as bytes, to be refused (415)
RAW_BODIES = ("MMS_DECODE_INPUT_REQUEST", "false")


def handle(batch, context):
    """Multi Model Server's entry point: ``batch`` None once at load (the model is loaded
    and warmed up then), else a list of requests ``{part name: bytes}``."""
    os.environ[RAW_BODIES[0]] = RAW_BODIES[1]
    if "service" not in _SERVICE:
        _SERVICE["service"] = ImageService(context.system_properties["model_dir"])
    if batch is None:
        return None
    return _SERVICE["service"].handle(batch, context)
