"""Weak labels out to a real Label Studio and gold labels back, through its HTTP API."""

from __future__ import annotations

import base64
import io
from datetime import datetime

import pytest
from PIL import Image

from autods.core.labelstudio import (
    LabelMismatch,
    LabelStudioClient,
    LabelStudioError,
    label_config,
    make_task,
    parse_export,
)
from tests.labelstudio_server import LabelStudio, annotate

pytestmark = pytest.mark.integration

LABELS = ["negative", "positive"]


@pytest.fixture
def client(label_studio: LabelStudio):
    with LabelStudioClient(label_studio.url, label_studio.token) as ls:
        yield ls


def _text_tasks(count: int) -> list[dict]:
    return [make_task(f"item-{i}", "text", f"review number {i}", {"source": "reviews.jsonl"},
                      prediction=(LABELS[i % 2], 0.5 + i / 10), model_version="lm-test")
            for i in range(count)]


def test_weak_labels_go_out_and_gold_labels_come_back(label_studio: LabelStudio,
                                                      client: LabelStudioClient) -> None:
    project = client.create_project("weak labels", label_config(LABELS, "text"))
    sent = _text_tasks(5)
    assert client.import_tasks(project, sent) == 5

    stored = {task["data"]["key"]: task for task in client.tasks(project)}
    assert sorted(stored) == [f"item-{i}" for i in range(5)]
    for task in sent:
        here = stored[task["data"]["key"]]
        assert here["data"] == task["data"]
        [prediction] = here["predictions"]
        assert prediction["result"] == task["predictions"][0]["result"]
        assert prediction["model_version"] == "lm-test"
        assert prediction["score"] == pytest.approx(task["predictions"][0]["score"])

    ids = {key: task["id"] for key, task in stored.items()}
    url, token = label_studio.url, label_studio.token
    annotate(url, token, ids["item-0"], "positive")
    annotate(url, token, ids["item-1"], "positive")
    changed = annotate(url, token, ids["item-1"], "negative")  # a second look, later
    annotate(url, token, ids["item-2"], None)  # skipped

    gold = parse_export(client.export(project), LABELS)

    annotator = f"user:{label_studio.user_id}"
    assert sorted((g.key, g.label, g.annotator, g.task_id) for g in gold) == [
        ("item-0", "positive", annotator, ids["item-0"]),
        ("item-1", "negative", annotator, ids["item-1"]),
    ]
    [second_look] = [g for g in gold if g.key == "item-1"]
    assert second_look.created_at == datetime.fromisoformat(changed["updated_at"])


def test_an_answer_outside_the_classes_is_named(label_studio: LabelStudio,
                                                client: LabelStudioClient) -> None:
    project = client.create_project("changed classes", label_config(LABELS, "text"))
    client.import_tasks(project, _text_tasks(1))
    [task] = client.tasks(project)
    annotate(label_studio.url, label_studio.token, task["id"], "neutral")

    with pytest.raises(LabelMismatch, match="neutral.*negative, positive"):
        parse_export(client.export(project), LABELS)


def test_an_image_task_imports_with_its_prediction(client: LabelStudioClient) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buf, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    project = client.create_project("images", label_config(LABELS, "image"))

    task = make_task("img-0", "image", uri, prediction=("positive", 0.9))
    assert client.import_tasks(project, [task]) == 1

    [stored] = client.tasks(project)
    assert stored["data"] == {"key": "img-0", "image": uri}
    [prediction] = stored["predictions"]
    assert prediction["result"] == [{"from_name": "label", "to_name": "image", "type": "choices",
                                     "value": {"choices": ["positive"]}}]


def test_a_refused_access_token_is_renewed_once(client: LabelStudioClient) -> None:
    client.create_project("before", label_config(LABELS, "text"))
    client._access = client._access[:-4] + "AAAA"  # a signature the server rejects
    assert client.create_project("after", label_config(LABELS, "text")) > 0


def test_server_errors_carry_status_and_message(label_studio: LabelStudio,
                                                client: LabelStudioClient) -> None:
    with pytest.raises(LabelStudioError, match="at least 3 characters") as refused:
        client.create_project("x", label_config(LABELS, "text"))
    assert refused.value.status == 400

    forged = label_studio.token[:-4] + "AAAA"
    with LabelStudioClient(label_studio.url, forged) as stranger, \
            pytest.raises(LabelStudioError, match="refused the personal access token") as denied:
        stranger.tasks(1)
    assert denied.value.status == 401
