"""Label Studio as the place where people check weak labels and hand back gold ones.

Items go out as Label Studio tasks whose ``data.key`` is the item's key, so answers can be
joined back without relying on Label Studio's own task ids (which differ between projects and
servers). The weak label travels as a prediction, so an annotator starts from it and only
has to correct it. Answers come back through Label Studio's own JSON export, the format a
person would also download from the UI, which keeps :func:`parse_export` usable on files.

Authentication follows current Label Studio (1.23): a personal access token is a long-lived
JWT refresh token, exchanged for short-lived access tokens; a legacy token (off by default
on new servers) is sent as is.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from xml.sax.saxutils import quoteattr

import httpx

from autods.core.records import Modality

FROM_NAME = "label"
_TAGS = {Modality.TEXT: "Text", Modality.IMAGE: "Image"}
_JWT = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){2}")
# An access token is renewed this long before it expires, so a request never races its expiry.
_EXPIRY_MARGIN_S = 30.0
_PAGE_SIZE = 100


class LabelMismatch(ValueError):
    """An answer names a class the dataset does not have (the project's choices changed, or
    the export belongs to another dataset)."""


class LabelStudioError(RuntimeError):
    """Label Studio refused a request or could not be reached (``status`` is then None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class GoldLabel:
    """One person's answer for one item: the class, who chose it and when it was last set."""

    key: str
    label: str
    annotator: str
    created_at: datetime
    task_id: int | None


def _modality(modality: str) -> Modality:
    try:
        return Modality(modality)
    except ValueError:
        raise ValueError(f"unknown modality {modality!r}; expected one of "
                         f"{', '.join(m.value for m in Modality)}") from None


def label_config(labels: Sequence[str], modality: str) -> str:
    """The labelling interface: the item and one single-choice question over ``labels``."""
    name = _modality(modality)
    if not labels:
        raise ValueError("a labelling config needs at least one class")
    choices = "".join(f"    <Choice value={quoteattr(label)}/>\n" for label in labels)
    return (f"<View>\n"
            f'  <{_TAGS[name]} name="{name}" value="${name}"/>\n'
            f'  <Choices name="{FROM_NAME}" toName="{name}" choice="single" showInline="true">\n'
            f"{choices}"
            f"  </Choices>\n"
            f"</View>\n")


def make_task(key: str, modality: str, content: str, labels_meta: dict[str, Any] | None = None,
              prediction: tuple[str, float] | None = None,
              model_version: str | None = None) -> dict[str, Any]:
    """One task in Label Studio's import format; ``prediction`` is the weak (label, p)."""
    name = _modality(modality)
    task: dict[str, Any] = {"data": {"key": key, name.value: content, **(labels_meta or {})}}
    if prediction is not None:
        label, score = prediction
        result = {"from_name": FROM_NAME, "to_name": name.value, "type": "choices",
                  "value": {"choices": [label]}}
        predicted: dict[str, Any] = {"score": score, "result": [result]}
        if model_version is not None:
            predicted["model_version"] = model_version
        task["predictions"] = [predicted]
    return task


def _choice(annotation: dict[str, Any], task_id: Any) -> str | None:
    """The class an annotation chose, or None when it has no answer to our question."""
    chosen = [choice for item in annotation.get("result") or []
              if item.get("type") == "choices" and item.get("from_name") == FROM_NAME
              for choice in item.get("value", {}).get("choices", [])]
    if len(chosen) > 1:
        raise ValueError(f"task {task_id}: annotation {annotation.get('id')} chose several "
                         f"classes {chosen}; the question takes a single choice")
    return chosen[0] if chosen else None


def _annotator(completed_by: Any) -> str:
    """Exports name the annotator by id, or by a user object when the export expands it."""
    if isinstance(completed_by, dict):
        return completed_by.get("email") or f"user:{completed_by.get('id')}"
    return f"user:{completed_by}"


def _when(annotation: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(annotation.get("updated_at") or annotation["created_at"])


def _read_task(task: dict[str, Any], latest: dict[str, GoldLabel]) -> None:
    """Fold one exported task's answers into ``latest`` (per key, the newest answer)."""
    task_id = task.get("id")
    key = (task.get("data") or {}).get("key")
    if key is None:
        raise ValueError(f"task {task_id} has no data.key; it was not imported by autods")
    for annotation in task.get("annotations") or []:
        label = None if annotation.get("was_cancelled") else _choice(annotation, task_id)
        if label is None:
            continue
        if not isinstance(label, str):
            raise ValueError(f"task {task_id}: a choice is {label!r}, not a class name")
        gold = GoldLabel(str(key), label, _annotator(annotation.get("completed_by")),
                         _when(annotation), task_id)
        current = latest.get(gold.key)
        if current is None or gold.created_at > current.created_at:
            latest[gold.key] = gold


def parse_export(tasks: list[dict[str, Any]], labels: Sequence[str]) -> list[GoldLabel]:
    """Gold labels from a JSON export: per key, the most recently set answer.

    Skipped or unanswered annotations are not answers. An item imported twice (two tasks
    with one key) still gets one label, the latest, because later answers correct earlier
    ones; a superseded answer is not checked against ``labels`` for the same reason. Every
    class outside ``labels`` is reported at once, so one look at the error shows whether the
    project and the dataset disagree on the classes.
    """
    latest: dict[str, GoldLabel] = {}
    for n, task in enumerate(tasks):
        try:
            _read_task(task, latest)
        except (AttributeError, TypeError, KeyError) as exc:
            # A file or request body that only looks like an export: say where, not crash.
            raise ValueError(f"item {n} is not a Label Studio export task "
                             f"({type(exc).__name__}: {exc})") from exc
    unknown = sorted({gold.label for gold in latest.values()} - set(labels))
    if unknown:
        raise LabelMismatch(f"Label Studio answers name classes the dataset does not have: "
                            f"{', '.join(unknown)} (dataset classes: {', '.join(labels)})")
    return list(latest.values())


def _expiry(jwt: str) -> float:
    """When a JWT expires (Unix time), read without verifying: the server verifies it."""
    payload = jwt.split(".")[1]
    return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


def _message(response: httpx.Response) -> str:
    """The server's own explanation: its JSON error fields, else the start of a text body."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        # An HTML error page is a whole page of markup around the status line.
        return response.reason_phrase if text.startswith("<") else text[:500]
    if isinstance(body, dict):
        parts = [str(body[field]) for field in ("detail", "validation_errors") if body.get(field)]
        return "; ".join(parts) or json.dumps(body)[:500]
    return json.dumps(body)[:500]


class LabelStudioClient:
    """The few Label Studio API calls autods needs, with errors that say what the server said."""

    def __init__(self, url: str, token: str, timeout: float = 30) -> None:
        # Responses set a session cookie; sending it back would authenticate later requests
        # by session (CSRF rules, no 401 on an expired access token) instead of the token.
        no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, cookies=no_cookies)
        self.url = url.rstrip("/")
        self._token = token
        self._personal = _JWT.fullmatch(token) is not None
        self._access = ""
        self._access_expires = 0.0

    @classmethod
    def from_env(cls) -> LabelStudioClient:
        """A client for ``LABEL_STUDIO_URL`` with ``LABEL_STUDIO_API_KEY``."""
        missing = [name for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY")
                   if not os.environ.get(name)]
        if missing:
            raise ValueError(f"set {' and '.join(missing)} (the server's address and an access "
                             f"token from its Account & Settings page)")
        return cls(os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"])

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"cannot reach Label Studio at {self.url}: {exc}") from exc

    def _renew_access(self) -> None:
        response = self._send("POST", "/api/token/refresh/", json={"refresh": self._token})
        if response.status_code != 200:
            raise LabelStudioError(f"Label Studio refused the personal access token "
                                   f"({response.status_code}): {_message(response)}",
                                   response.status_code)
        self._access = response.json()["access"]
        self._access_expires = _expiry(self._access)

    def _authorization(self) -> str:
        if not self._personal:
            return f"Token {self._token}"
        if time.time() > self._access_expires - _EXPIRY_MARGIN_S:
            self._renew_access()
        return f"Bearer {self._access}"

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._send(method, path, headers={"Authorization": self._authorization()},
                              **kwargs)
        if response.status_code == 401 and self._personal:
            # The access token can be revoked or the server's clock can disagree with ours.
            self._renew_access()
            response = self._send(method, path, headers={"Authorization": self._authorization()},
                                  **kwargs)
        if response.status_code >= 400:
            raise LabelStudioError(f"{method} {path} failed ({response.status_code}): "
                                   f"{_message(response)}", response.status_code)
        return response

    def create_project(self, title: str, label_config: str) -> int:
        """A new project with this labelling interface; its id."""
        response = self._request("POST", "/api/projects/",
                                 json={"title": title, "label_config": label_config})
        return int(response.json()["id"])

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> int:
        """Add tasks (with their predictions) to a project; how many the server created."""
        response = self._request("POST", f"/api/projects/{project_id}/import", json=tasks)
        return int(response.json()["task_count"])

    def tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of a project, with its data, predictions and annotations as stored."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self._request("GET", "/api/tasks/", params={
                "project": project_id, "fields": "all", "resolve_uri": "false",
                "page": page, "page_size": _PAGE_SIZE}).json()
            found.extend(body["tasks"])
            if not body["tasks"] or len(found) >= body["total"]:
                return found
            page += 1

    def export(self, project_id: int) -> list[dict[str, Any]]:
        """The project's annotated tasks in Label Studio's JSON export format."""
        response = self._request("GET", f"/api/projects/{project_id}/export",
                                 params={"exportType": "JSON", "download_resources": "false"})
        return response.json()
