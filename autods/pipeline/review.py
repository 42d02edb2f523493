"""Human review through Label Studio: the samples a person should label, out as tasks with
the model's prediction, and their annotations back as gold labels.

Tasks carry the sample key in their data, so an annotation finds its sample again in any
later version (keys are content hashes). A text task shows the text; an image task shows
the image at the URL a template gives (an API or bucket address Label Studio can load),
else the image itself as a ``data:`` URI, which needs nothing else to be reachable.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from autods.core.label import ABSTAIN
from autods.core.labelstudio import GoldLabel, LabelStudioClient, make_task, parse_export
from autods.core.records import Modality
from autods.core.validate import IMAGE_EXTENSIONS
from autods.pipeline.relabel import Fit, lfs_of, review_candidates, store_gold
from autods.pipeline.runtime import Runtime

_MIME = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "webp": "webp", "gif": "gif",
         "bmp": "bmp", "tif": "tiff", "tiff": "tiff"}


def review_tasks(rt: Runtime, fit: Fit, limit: int, *, by: str = "entropy",
                 image_url: str | None = None) -> list[dict]:
    """Label Studio tasks for the ``limit`` samples the model is least sure of (or where
    LFs conflict), each with the model's label as a pre-annotation."""
    from autods.dataset import open_dataset

    rows = review_candidates(fit, limit, by)
    dataset = None
    tasks = []
    a = fit.assignment
    for i in rows:
        key, modality = fit.samples.keys[i], fit.samples.modalities[i]
        if modality == Modality.TEXT:
            content = fit.samples.texts[i]
        elif image_url:
            content = image_url.format(key=key, dataset=fit.dataset)
        else:
            if dataset is None:
                dataset = open_dataset(fit.output_url, rt.settings)
            content = _data_uri(dataset.get(key, version=fit.version.number))
        label = int(a.label[i])
        prediction = (fit.spec.labels[label], float(a.prob[i])) if label != ABSTAIN else None
        tasks.append(make_task(key, modality, content,
                               {"lf_votes": _votes(fit, i), "dataset": fit.dataset},
                               prediction, fit.model.version))
    return tasks


def _votes(fit: Fit, row: int) -> str:
    """The LFs that voted, as a person reading the task would want them."""
    votes = [f"{name}={fit.spec.labels[v]}" for name, v in
             zip(fit.model.lf_names, fit.matrix[row].tolist(), strict=True) if v != ABSTAIN]
    return ", ".join(votes) or "(no LF voted)"


def _data_uri(members: dict[str, bytes]) -> str:
    ext = next(e for e in members if e in IMAGE_EXTENSIONS)
    encoded = base64.b64encode(members[ext]).decode()
    return f"data:image/{_MIME.get(ext, ext)};base64,{encoded}"


def push_tasks(client: LabelStudioClient, fit: Fit, tasks: list[dict],
               project: int | None) -> int:
    """Create the tasks in ``project`` (a new project, with the dataset's classes, when
    None); returns the project id."""
    from autods.core.labelstudio import label_config

    if project is None:
        modality = fit.samples.modalities[0] if fit.samples.modalities else "text"
        project = client.create_project(f"{fit.dataset} review",
                                        label_config(fit.spec.labels, modality))
    client.import_tasks(project, tasks)
    return project


def read_export(path: Path) -> list[dict]:
    """Label Studio's JSON export (a list of tasks) from a file."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, list):
        raise ValueError(f"{path} is not a Label Studio JSON export (a list of tasks)")
    return doc


def import_gold(rt: Runtime, dataset: str, tasks: list[dict], origin: str, *,
                lfs: str | None = None) -> list[GoldLabel]:
    """Annotations become the dataset's gold labels; a label that is not one of the
    classes of its LF module is refused with the classes named, and nothing is stored."""
    gold = parse_export(tasks, rt.label_spec(lfs_of(rt, dataset, lfs)).labels)
    store_gold(rt, dataset, gold, origin)
    return gold
