"""Label Studio's formats without a server: labelling configs, import tasks, JSON exports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from autods.core.labelstudio import (
    GoldLabel,
    LabelMismatch,
    LabelStudioClient,
    label_config,
    make_task,
    parse_export,
)

LABELS = ["negative", "positive"]


def test_label_config_asks_one_question_about_the_item() -> None:
    view = ET.fromstring(label_config(LABELS, "text"))
    text, choices = list(view)
    assert (text.tag, text.attrib) == ("Text", {"name": "text", "value": "$text"})
    assert choices.tag == "Choices"
    assert choices.attrib == {"name": "label", "toName": "text", "choice": "single",
                              "showInline": "true"}
    assert [c.attrib["value"] for c in choices] == LABELS


def test_label_config_escapes_class_names() -> None:
    odd = ['say "hi"', "a & b", "<tag>", "it's"]
    view = ET.fromstring(label_config(odd, "image"))
    image, choices = list(view)
    assert (image.tag, image.attrib) == ("Image", {"name": "image", "value": "$image"})
    assert choices.attrib["toName"] == "image"
    assert [c.attrib["value"] for c in choices] == odd


@pytest.mark.parametrize(("labels", "modality", "message"), [
    (LABELS, "audio", "unknown modality 'audio'"),
    ([], "text", "at least one class"),
])
def test_label_config_refuses_what_it_cannot_ask(labels, modality, message) -> None:
    with pytest.raises(ValueError, match=message):
        label_config(labels, modality)


def test_make_task_carries_the_weak_label_as_a_prediction() -> None:
    task = make_task("k1", "text", "a fine film", {"source": "reviews"},
                     prediction=("positive", 0.75), model_version="lm-abc")
    assert task == {
        "data": {"key": "k1", "text": "a fine film", "source": "reviews"},
        "predictions": [{"model_version": "lm-abc", "score": 0.75, "result": [
            {"from_name": "label", "to_name": "text", "type": "choices",
             "value": {"choices": ["positive"]}}]}],
    }


def test_make_task_leaves_the_model_version_to_the_server() -> None:
    [prediction] = make_task("k1", "text", "meh", prediction=("negative", 0.5))["predictions"]
    assert "model_version" not in prediction


def test_make_task_without_a_prediction() -> None:
    assert make_task("k2", "image", "s3://b/k2.jpg") == {"data": {"key": "k2",
                                                                  "image": "s3://b/k2.jpg"}}


def _answer(label: str | None, at: str, completed_by: object = 7, *,
            cancelled: bool = False, updated: str | None = None) -> dict:
    result = [] if label is None else [{"from_name": "label", "to_name": "text",
                                        "type": "choices", "value": {"choices": [label]}}]
    return {"id": 1, "completed_by": completed_by, "result": result,
            "was_cancelled": cancelled, "created_at": at, "updated_at": updated or at}


def _task(task_id: int, key: str | None, *annotations: dict) -> dict:
    data = {"text": "t"} if key is None else {"key": key, "text": "t"}
    return {"id": task_id, "data": data, "annotations": list(annotations), "predictions": []}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_parse_export_takes_the_latest_answer_per_item() -> None:
    export = [
        # Updated later than the second annotation was created: the first one wins.
        _task(1, "a", _answer("positive", "2026-01-01T10:00:00Z", updated="2026-01-03T10:00:00Z"),
              _answer("negative", "2026-01-02T10:00:00Z")),
        _task(2, "b", _answer("negative", "2026-01-01T10:00:00Z",
                              {"id": 3, "email": "ann@example.com", "first_name": "Ann"})),
        _task(3, "c", _answer("positive", "2026-01-01T10:00:00Z", {"id": 4, "email": ""})),
        _task(4, "d"),
    ]
    assert parse_export(export, LABELS) == [
        GoldLabel("a", "positive", "user:7", _utc("2026-01-03T10:00:00"), 1),
        GoldLabel("b", "negative", "ann@example.com", _utc("2026-01-01T10:00:00"), 2),
        GoldLabel("c", "positive", "user:4", _utc("2026-01-01T10:00:00"), 3),
    ]


def test_parse_export_skips_what_is_not_an_answer() -> None:
    other_question = _answer("positive", "2026-01-05T00:00:00Z")
    other_question["result"][0]["from_name"] = "sentiment"
    export = [_task(1, "a", _answer("negative", "2026-01-01T00:00:00Z"),
                    _answer("positive", "2026-01-02T00:00:00Z", cancelled=True),
                    _answer(None, "2026-01-03T00:00:00Z"),
                    other_question)]
    [gold] = parse_export(export, LABELS)
    assert gold.label == "negative"


def test_an_item_imported_twice_gets_its_latest_answer() -> None:
    export = [_task(1, "a", _answer("negative", "2026-01-02T00:00:00Z")),
              _task(9, "a", _answer("positive", "2026-01-01T00:00:00Z"))]
    [gold] = parse_export(export, LABELS)
    assert (gold.label, gold.task_id) == ("negative", 1)


def test_parse_export_names_every_unknown_class() -> None:
    export = [_task(1, "a", _answer("neutral", "2026-01-01T00:00:00Z")),
              _task(2, "b", _answer("mixed", "2026-01-01T00:00:00Z")),
              _task(3, "c", _answer("positive", "2026-01-01T00:00:00Z"))]
    with pytest.raises(LabelMismatch, match=r"mixed, neutral \(dataset classes: negative, "
                                            r"positive\)"):
        parse_export(export, LABELS)


def test_a_corrected_unknown_class_is_no_mismatch() -> None:
    export = [_task(1, "a", _answer("neutral", "2026-01-01T00:00:00Z"),
                    _answer("positive", "2026-01-02T00:00:00Z"))]
    assert [g.label for g in parse_export(export, LABELS)] == ["positive"]


def test_parse_export_needs_the_item_key() -> None:
    with pytest.raises(ValueError, match="task 5 has no data.key"):
        parse_export([_task(5, None, _answer("positive", "2026-01-01T00:00:00Z"))], LABELS)


def test_several_choices_are_refused() -> None:
    answer = _answer("positive", "2026-01-01T00:00:00Z")
    answer["result"][0]["value"]["choices"].append("negative")
    with pytest.raises(ValueError, match="task 1: .* chose several classes"):
        parse_export([_task(1, "a", answer)], LABELS)


def test_from_env_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:8080")
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(ValueError, match="set LABEL_STUDIO_API_KEY"):
        LabelStudioClient.from_env()
