"""The entry points of ``xception-export --format sagemaker``'s ``code/inference.py``, as
SageMaker's inference toolkit calls them: ``model_fn(model_dir)`` once, then
``transform_fn(model, body, content_type, accept)`` per request.  A request holds one image
(JPEG, PNG, WebP... as ``image/*``, ``application/x-image`` or
``application/octet-stream``); the answer is ``xception-predict --json``'s record, computed as
the MMS service computes it (``service.ImageService``).  A bad request gets its 4xx status
with the message, as the toolkit's ``GenericInferenceToolkitError`` where it is installed."""
import http
import json

from xception_mx.deploy.service import (ImageService, RequestError, decode_parts,
                                        request_parts, response)

JSON = "application/json"
ACCEPTED = ("*/*", "application/*", JSON)


def accepts_json(accept):
    """Whether an ``Accept`` header (none, or a list of media ranges) takes JSON."""
    ranges = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    return not any(ranges) or any(r in ACCEPTED for r in ranges)


def model_fn(model_dir):
    """The checkpoint of the unpacked model (``/opt/ml/model``), loaded and warmed up."""
    return ImageService(model_dir)


def transform_fn(model, body, content_type, accept):
    """One request's answer: ``(JSON text, "application/json")``."""
    try:
        if not accepts_json(accept):
            raise RequestError(406, "accept %s: the answer is application/json" % accept)
        parts = request_parts({"body": body}, lambda name: content_type)
        rows = model.model.ranked(decode_parts(model.model, parts), model.top)
    except RequestError as exc:
        raise toolkit_error(exc)
    return json.dumps(response(parts, rows)), JSON


def toolkit_error(exc):
    """``exc`` as the inference toolkit's error of its status (HTTP's phrase in the status
    line, the message in the body), or as it is without the toolkit."""
    try:
        from sagemaker_inference.errors import GenericInferenceToolkitError
    except ImportError:
        return exc
    return GenericInferenceToolkitError(exc.status, str(exc), http.HTTPStatus(exc.status).phrase)
