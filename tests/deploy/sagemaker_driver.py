"""Run an unpacked ``xception-export --format sagemaker`` model as a SageMaker MXNet container
runs it, in this process: ``code/`` first on the path (so its own copy of xception-mx is
imported), then either ``code/inference.py``'s functions called directly (``direct``) or
the inference toolkit's handler service (``toolkit``: ``sagemaker_mxnet_serving_container``'s
``HandlerService`` on Multi Model Server's ``Context``, as a container's worker calls it).

    python sagemaker_driver.py MODEL_DIR direct|toolkit REQUESTS.json

REQUESTS.json: ``[[body file, content type, accept], ...]``.  Prints one JSON line:
``{"package": xception_mx.__file__, "answers": [[status, content type, body text], ...]}``.
"""
import json
import os
import sys


def direct(model_dir, requests):
    import inference
    model = inference.model_fn(model_dir)
    answers = []
    for body, content_type, accept in requests:
        try:
            text, kind = inference.transform_fn(model, body, content_type, accept)
            answers.append([200, kind, text])
        except Exception as exc:            # the toolkit turns these into the status
            answers.append([getattr(exc, "status", None) or
                            getattr(exc, "status_code", 500), None, str(exc)])
    return answers


def toolkit(model_dir, requests):
    from mms.context import Context, RequestProcessor
    from sagemaker_mxnet_serving_container.handler_service import HandlerService
    service = HandlerService()               # imports SAGEMAKER_PROGRAM (inference.py)
    context = Context("model", model_dir, None, 1, None, "1.1.11")
    answers = []
    for body, content_type, accept in requests:
        headers = {"Content-Type": content_type} if content_type else {}
        if accept:
            headers["Accept"] = accept
        context.request_processor = [RequestProcessor(headers)]
        if not answers:
            service.initialize(context)
        out = service.handle([{"body": body}], context)
        processor = context.request_processor[0]
        answers.append([processor.get_response_status_code(),
                        processor.get_response_header("Content-Type") or
                        processor.get_response_header("content-type"),
                        out[0] if isinstance(out[0], str) else out[0].decode()])
    return answers


def main():
    model_dir, how, requests_file = sys.argv[1:4]
    sys.path.insert(0, os.path.join(model_dir, "code"))
    with open(requests_file) as f:
        requests = [[open(body, "rb").read(), kind, accept] for body, kind, accept in
                    json.load(f)]
    answers = (direct if how == "direct" else toolkit)(model_dir, requests)
    import xception_mx
    print(json.dumps({"package": xception_mx.__file__, "answers": answers}))


if __name__ == "__main__":
    main()
