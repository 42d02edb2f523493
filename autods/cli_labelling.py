"""The labelling loop on the command line: ``lf-report``, ``label-studio export|import``
and ``relabel``. Each works on an output folder (the embedded build's own database) or on
a dataset of the configured service."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated

import typer

from autods.core.records import JobRefused, JobState

label_studio_app = typer.Typer(no_args_is_help=True,
                               help="Review samples in Label Studio; import its labels.")

DatasetArg = Annotated[str, typer.Argument(
    help="Output folder, s3:// location, or dataset name in the database.")]
LfsOpt = Annotated[str | None, typer.Option(
    "--lfs", help="LF module (default: the one the dataset's latest labelled job used).")]


def _cli():
    from autods import cli

    cli._importable_here()
    return cli


def _read_gold_file(path: Path, labels: list[str]) -> dict[str, str]:
    """Gold from a Label Studio JSON export, or a CSV / JSON Lines file of key and label."""
    from autods.core.labelstudio import parse_export

    if path.suffix == ".json":
        return {g.key: g.label for g in parse_export(json.loads(path.read_text()), labels)}
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {str(r["key"]): str(r["label"]) for r in rows}


def _tables(report, name: str) -> tuple:
    """The LF table and the summary, for the terminal; gold columns only with gold."""
    from rich.table import Table

    from autods.core.lfreport import summary_rows, table_rows

    rows = table_rows(report)
    keep = range(len(rows[0])) if report.n_gold else range(6)
    table = Table(*(rows[0][i] for i in keep), title=f"Labelling functions of {name}")
    table.columns[0].no_wrap = True
    table.columns[0].min_width = max(len(r[0]) for r in rows)
    for row in rows[1:]:
        table.add_row(*(row[i] for i in keep))
    summary = Table("", "", show_header=False)
    for key, value in summary_rows(report):
        summary.add_row(key, value)
    return table, summary


def lf_report(
    dataset: DatasetArg,
    version: Annotated[int | None, typer.Option("--version", help="Version (default: latest).")]
    = None,
    gold: Annotated[Path | None, typer.Option(
        help="Gold labels: a Label Studio JSON export, or CSV/JSONL with key and label "
             "(default: the dataset's imported gold).")] = None,
    lfs: LfsOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or html.")] = "table",
    out: Annotated[Path | None, typer.Option(help="Write the report here.")] = None,
) -> None:
    """Per LF: coverage, overlaps, conflicts, polarity, the label model's estimated weight
    and, where gold exists, empirical accuracy; then coverage, abstain rate and labels."""
    from autods.core.lfreport import to_html
    from autods.pipeline.relabel import fit_version, lfs_of

    cli = _cli()
    if fmt not in ("table", "json", "html"):
        raise cli._refuse(ValueError(f"--format is table, json or html, not {fmt!r}"))
    rt, name = cli._runtime_for(dataset)
    try:
        given = None
        if gold is not None:
            given = _read_gold_file(gold, rt.label_spec(lfs_of(rt, name, lfs)).labels)
        report = fit_version(rt, name, lfs=lfs, version=version, gold=given).report()
    except (JobRefused, ValueError, KeyError) as exc:
        raise cli._refuse(exc) from None
    if fmt == "json":
        text = json.dumps(report.to_dict(), indent=2)
    elif fmt == "html":
        text = to_html(report, f"Labelling functions of {name}")
    else:
        if out is None:
            cli.console.print(*_tables(report, name))
            return
        from rich.console import Console

        with out.open("w", encoding="utf-8") as f:
            Console(file=f, width=160).print(*_tables(report, name))
        return
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text, encoding="utf-8")


@label_studio_app.command("export")
def export(
    dataset: DatasetArg,
    limit: Annotated[int, typer.Option(help="How many samples to review.")] = 100,
    by: Annotated[str, typer.Option(
        help="entropy (least sure first) or conflict (LFs disagree first).")] = "entropy",
    project: Annotated[int | None, typer.Option(
        help="Create the tasks in this Label Studio project (LABEL_STUDIO_URL and "
             "LABEL_STUDIO_API_KEY); 0 creates a new one.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write Label Studio's task JSON here instead.")] = None,
    image_url: Annotated[str | None, typer.Option(
        help="URL template of an image for Label Studio, with {key} and {dataset} "
             "(default: the image inline).")] = None,
    lfs: LfsOpt = None,
) -> None:
    """The samples the label model is least sure of, as Label Studio tasks with its
    prediction as a pre-annotation."""
    from autods.core.labelstudio import LabelStudioClient, LabelStudioError
    from autods.pipeline.relabel import fit_version
    from autods.pipeline.review import push_tasks, review_tasks

    cli = _cli()
    if (project is None) == (out is None):
        raise cli._refuse(ValueError("give --out FILE or --project ID (0: a new project)"))
    rt, name = cli._runtime_for(dataset)
    try:
        fit = fit_version(rt, name, lfs=lfs)
        tasks = review_tasks(rt, fit, limit, by=by, image_url=image_url)
    except (JobRefused, ValueError) as exc:
        raise cli._refuse(exc) from None
    if out is not None:
        out.write_text(json.dumps(tasks, indent=1, ensure_ascii=False), encoding="utf-8")
        cli.console.print(f"{len(tasks)} task(s) written to {out}")
        return
    try:
        pid = push_tasks(LabelStudioClient.from_env(), fit, tasks, project or None)
    except (LabelStudioError, ValueError) as exc:
        raise cli._refuse(exc) from None
    cli.console.print(f"{len(tasks)} task(s) in Label Studio project {pid}")


@label_studio_app.command("import")
def import_(
    dataset: DatasetArg,
    file: Annotated[Path | None, typer.Argument(
        help="Label Studio's JSON export of the project.")] = None,
    project: Annotated[int | None, typer.Option(
        help="Pull the annotations from this Label Studio project instead.")] = None,
    lfs: LfsOpt = None,
) -> None:
    """Annotations become gold labels (who and when kept); the label names must be the
    dataset's classes."""
    from autods.core.labelstudio import LabelStudioClient, LabelStudioError
    from autods.pipeline.review import import_gold, read_export

    cli = _cli()
    if (file is None) == (project is None):
        raise cli._refuse(ValueError("give an export FILE or --project ID"))
    rt, name = cli._runtime_for(dataset)
    try:
        if file is not None:
            tasks, origin = read_export(file), f"file:{file.name}"
        else:
            client = LabelStudioClient.from_env()
            tasks, origin = client.export(project), f"label-studio:{client.url}/projects/{project}"
        gold = import_gold(rt, name, tasks, origin, lfs=lfs)
    except (JobRefused, ValueError, LabelStudioError, OSError) as exc:
        raise cli._refuse(exc) from None
    cli.console.print(f"{len(gold)} gold label(s) stored for {name}")


def relabel(
    dataset: DatasetArg,
    lfs: LfsOpt = None,
    class_balance: Annotated[str | None, typer.Option(
        help="Class shares in LABELS order, e.g. 0.5,0.5 (default: from gold, else "
             "uniform).")] = None,
) -> None:
    """A new version whose every sample is labelled: gold first, the label model fitted on
    the whole version with the gold where LFs voted, an end model on the embeddings
    elsewhere. Runs over the existing shards; older versions stay as they were."""
    cli = _cli()
    balance = None
    if class_balance:
        try:
            balance = [float(x) for x in class_balance.split(",")]
        except ValueError:
            raise cli._refuse(ValueError(f"--class-balance: numbers, not {class_balance!r}"))\
                from None
    folder = Path(dataset)
    try:
        if (folder / ".autods" / "autods.sqlite").exists():
            from autods.embedded import relabel_embedded

            status = relabel_embedded(folder, lfs=lfs, class_balance=balance, progress=True)
        else:
            status = _relabel_service(cli, dataset, lfs, balance)
    except (JobRefused, ValueError) as exc:
        raise cli._refuse(exc) from None
    if status.status != JobState.SUCCEEDED:
        cli.console.print(f"[red]job {status.job_id} failed:[/red] {status.error}")
        raise typer.Exit(1)
    rt, name = cli._runtime_for(dataset)
    from autods.core.lfreport import LfReport
    from autods.pipeline.relabel import latest_report

    report = LfReport.from_dict(latest_report(rt, name))
    cli.console.print(*_tables(report, name))
    sources = ", ".join(f"{k} {v}" for k, v in report.label_sources.items())
    cli.console.print(f"relabelled {report.n_samples} sample(s) with "
                      f"{report.model.get('version', '?')} ({sources}); latest "
                      f"version {cli._open(dataset).version().number}", highlight=False)


def _relabel_service(cli, dataset: str, lfs: str | None, balance: list[float] | None):
    """Send the fit to the label queue of the configured service, then watch its job."""
    from autods.api import relabel as send

    _, name = cli._runtime_for(dataset)
    return send(name, lfs=lfs, class_balance=balance).wait(progress=True)
