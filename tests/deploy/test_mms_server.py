"""xception-export --format mms served by a real Multi Model Server (Java, on 127.0.0.1, one
worker per model): the answers are xception-predict's, under load none is lost, bad bodies
get a 4xx and the server goes on, a killed worker comes back, and the server stops clean.

One server serves every model of the module: plain Xception at 299x299 with ImageNet's 1000
classes (the demo's checkpoint), a fine-tuned transfer model (xception-finetune's export,
class names from its folders), a grayscale transfer model, a multi-output model and an int8
export.  Under CI a missing Java fails these tests: it does not skip them."""
import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import PHOTOS, run_tool
from mms_server import BAD_BODY_CASES, MmsServer, bad_bodies, java_missing
from export_checkpoints import PROBABILITY_ATOL, assert_same_classes, predicted
from shapes_dataset import CLASSES

BATCH = 4                    # the batched model's MMS batch size


def export(prefix, mar, *flags):
    result = run_tool("xception-export", prefix, "--format", "mms", "-o", mar, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    return str(mar)


@pytest.fixture(scope="module")
def server(checkpoints, tmp_path_factory):
    why = java_missing()
    if why:
        pytest.fail(why)
    folder = tmp_path_factory.mktemp("mms")
    archives = {name: export(prefix, folder / (name + ".mar"))
                for name, prefix in checkpoints.items()}
    archives["int8"] = export(checkpoints["transfer"], folder / "int8.mar", "--precision",
                              "int8", "--calib-images", *PHOTOS)
    mms = MmsServer(folder / "server", archives).start()
    mms.register("batched", export(checkpoints["transfer"], folder / "batched.mar",
                                   "--batch-size", str(BATCH)), BATCH, max_batch_delay=300)
    yield mms
    mms.stop()


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("name", ["demo", "transfer", "gray", "multi"])
def test_the_server_answers_what_xception_predict_prints(server, checkpoints, name):
    expected = predicted(checkpoints[name])
    for photo in PHOTOS:
        status, body, headers = server.predict(name, read(photo))
        assert status == 200, body
        assert headers["content-type"].startswith("application/json")
        answer = json.loads(body)
        if name == "multi":
            assert sorted(answer["outputs"]) == sorted(expected[photo]["outputs"])
            for output, values in answer["outputs"].items():
                wanted = expected[photo]["outputs"][output]
                if values and isinstance(values[0], list):
                    assert_same_classes(values, wanted)
                else:
                    np.testing.assert_allclose(values, wanted, rtol=0, atol=PROBABILITY_ATOL)
        else:
            assert len(answer["top"]) == min(5, len(expected[photo]["top"]))
            assert_same_classes(answer["top"], expected[photo]["top"])
    if name == "transfer":       # the fine-tuning's class folders name the classes
        assert {n for n, _ in answer["top"]} == set(CLASSES)


def test_an_int8_export_answers_as_the_quantized_copy_predicts(server, checkpoints, tmp_path):
    copy = tmp_path / "copy"
    quantized = run_tool("xception-quantize", checkpoints["transfer"], "-o", copy,
                         "--calib-images", *PHOTOS)
    assert quantized.returncode == 0, quantized.stderr[-3000:]
    with open(checkpoints["transfer"] + "-labels.txt") as f:     # the names go with the copy
        assert (tmp_path / "copy-labels.txt").read_text() == f.read()
    expected = predicted(copy)
    for photo in PHOTOS:
        status, body, _ = server.predict("int8", read(photo))
        assert status == 200, body
        assert_same_classes(json.loads(body)["top"], expected[photo]["top"])


def test_several_images_in_one_request_are_answered_in_their_order(server, checkpoints):
    boundary = "xception-mx-test"
    parts = b"".join(b"--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                     b"Content-Type: image/jpeg\r\n\r\n%s\r\n"
                     % (boundary.encode(), os.path.basename(p).encode(),
                        os.path.basename(p).encode(), read(p)) for p in PHOTOS[:3])
    body = parts + b"--%s--\r\n" % boundary.encode()
    status, text, _ = server.predict("transfer", body,
                                     "multipart/form-data; boundary=%s" % boundary)
    assert status == 200, text
    answer = json.loads(text)
    expected = predicted(checkpoints["transfer"])
    assert [a["image"] for a in answer] == [os.path.basename(p) for p in PHOTOS[:3]]
    for record, photo in zip(answer, PHOTOS[:3]):
        assert_same_classes(record["top"], expected[photo]["top"])


def test_eight_clients_of_25_requests_each_are_all_answered(server, checkpoints):
    expected = predicted(checkpoints["transfer"])
    bodies = [(photo, read(photo)) for photo in PHOTOS]

    def client(k):
        answers = []
        for i in range(25):
            photo, body = bodies[(k + i) % len(bodies)]
            status, text, _ = server.predict("transfer", body)
            answers.append((photo, status, text))
        return answers

    with ThreadPoolExecutor(8) as pool:
        answers = [a for client_answers in pool.map(client, range(8)) for a in client_answers]
    assert len(answers) == 200
    assert [status for _, status, _ in answers] == [200] * 200
    for photo, _, text in answers:
        assert_same_classes(json.loads(text)["top"], expected[photo]["top"])


def test_a_batch_of_requests_is_answered_each_as_alone_and_a_bad_one_alone_refused(
        server, checkpoints):
    """MMS hands the batched model's worker up to 4 waiting requests at once: each gets
    its own answer, and a bad body among them gets its own 400 while the others succeed."""
    expected = predicted(checkpoints["transfer"])
    bodies = [read(p) for p in PHOTOS] + [b"not an image"] + [read(PHOTOS[0])]
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: server.predict("batched", body), bodies))
    statuses = [status for status, _, _ in answers]
    assert statuses == [200] * len(PHOTOS) + [400, 200], answers
    for (_, text, _), photo in zip(answers, PHOTOS + [None, PHOTOS[0]]):
        if photo is not None:
            assert_same_classes(json.loads(text)["top"], expected[photo]["top"])
    assert "not an image format" in json.loads(answers[len(PHOTOS)][1])["message"]
    sizes = [int(m) for m in re.findall(r"W-batched-\S+ .* answered a batch of (\d+) ",
                                        server.log_text())]
    assert max(sizes) > 1, sizes          # MMS did batch them


@pytest.fixture(scope="module")
def bodies():
    return bad_bodies(read(PHOTOS[0]))


@pytest.mark.parametrize("case", BAD_BODY_CASES)
def test_a_bad_body_gets_a_4xx_that_says_why_and_the_server_goes_on(server, bodies, case):
    body, content_type, status, says = bodies[case]
    answer_status, text, _ = server.predict("transfer", body, content_type)
    assert answer_status == status, text
    if says is not None:           # MMS's own 413 for a body past max_request_size: no JSON
        error = json.loads(text)
        assert error["code"] == status and says in error["message"], error
    good, text, _ = server.predict("transfer", read(PHOTOS[0]))
    assert good == 200, text


def test_a_killed_worker_is_restarted_and_the_next_request_succeeds(server):
    before = server.workers()
    assert len(before) == len(server.models)            # one per model
    status, _, _ = server.predict("gray", read(PHOTOS[0]))
    assert status == 200
    victim = max(before, key=lambda p: p.create_time())     # some model's worker
    victim.kill()
    victim.wait(timeout=30)
    started = time.time()
    statuses = []
    for name in server.models:
        status, text, _ = server.predict(name, read(PHOTOS[0]))
        statuses.append(status)
    assert statuses == [200] * len(server.models), text
    after = server.workers()
    assert len(after) == len(server.models) and victim.pid not in [p.pid for p in after]
    assert time.time() - started < 120


def test_the_server_stops_and_leaves_nothing_listening(server):
    pids = [p.pid for p in server.workers()] + [server.process.pid]
    result, alive = server.stop()
    assert result.returncode == 0 and "stopped" in result.stdout, result.stdout + result.stderr
    assert alive == []
    assert server.listening() == []
    assert not any(_running(pid) for pid in pids)
    assert not os.path.exists(os.path.join(server.tmp, ".model_server.pid"))


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True,
                           text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")

