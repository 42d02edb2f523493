"""``autods build`` on the bundled sample, as a user runs it: shards every reader loads,
duplicates and rejects with reasons, labels, and a resumed run equal to an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample"
ENV = {"AUTODS_CLIP_MODEL": "autods-tiny-vit", "AUTODS_CLIP_PRETRAINED": "random",
       "AUTODS_PIPELINE_CHUNK_SIZE": "8",
       "AUTODS_PIPELINE_BATCH_SIZE": "16"}


def _build_cmd(out: Path) -> list[str]:
    """The installed ``autods`` script, as ``make sample`` runs it (not ``python -m``, which
    would put the current folder on the module path for it)."""
    return [str(Path(sys.executable).parent / "autods"), "build", str(SAMPLE / "images"),
            str(SAMPLE / "texts.jsonl"), "--out", str(out), "--lfs", "examples.sample_lfs",
            "--workers", "2", "--quiet"]


def _build(out: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(_build_cmd(out), cwd=ROOT, env={**os.environ, **ENV},
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _items(out: Path) -> dict[str, tuple]:
    with sqlite3.connect(out / ".autods" / "autods.sqlite") as db:
        rows = db.execute("SELECT id, uri, status, reason, duplicate_of FROM items").fetchall()
    by_id = {r[0]: r[1].rsplit("/", 1)[-1] for r in rows}
    return {r[1].rsplit("/", 1)[-1]: (r[2], r[3], by_id.get(r[4])) for r in rows}


def _shard_digests(out: Path) -> dict[str, str]:
    index = json.loads((out / "index.json").read_text())
    return {e["url"]: e["sha256"] for e in index["shardlist"]}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("sample") / "ds"
    return out, _build(out).stdout


def test_summary_counts_every_outcome(built):
    _, stdout = built
    for line in ("inputs            │     68", "published samples │     59",
                 "exact duplicates  │      4", "near duplicates   │      3",
                 "corrupt_image   │      1", "not_an_image    │      1"):
        assert line in stdout, stdout


def test_duplicates_and_rejects_are_recorded_with_reasons(built):
    items = _items(built[0])
    assert items["broken_truncated.jpg"][:2] == ("failed", "corrupt_image")
    assert items["not_an_image.jpg"][:2] == ("failed", "not_an_image")
    near = {name: v for name, v in items.items() if v[0] == "near_duplicate"}
    assert sorted(near) == ["sample_000_near.jpg", "sample_013_near.jpg", "sample_026_near.jpg"]
    for name, (_, _, original) in near.items():
        assert original.rsplit(".", 1)[0] == name.replace("_near.jpg", "")
    copies = {name: v[2] for name, v in items.items()
              if v[0] == "exact_duplicate" and name.endswith(("png", "jpg", "webp", "gif"))}
    assert copies == {f"sample_{n}_copy.{e}": f"sample_{n}.{e}"
                      for n, e in (("005", "jpg"), ("011", "png"), ("022", "png"))}


def test_plain_tarfile_and_index_agree(built):
    out = built[0]
    index = json.loads((out / "index.json").read_text())
    total = 0
    for entry in index["shardlist"]:
        with tarfile.open(out / entry["url"]) as tar:
            names = tar.getnames()
        keys = {n.split(".", 1)[0] for n in names}
        exts = {n.split(".", 1)[1] for n in names}
        assert len(keys) == entry["nsamples"] and all(len(n) < 100 for n in names)
        assert {"txt", "json", "npy", "cls"} <= exts and len(names) == len(keys) * len(exts)
        total += entry["nsamples"]
    assert total == 59


def test_webdataset_reads_every_shard_and_decodes_images(built):
    import webdataset as wds

    out = built[0]
    urls = [str(out / e["url"]) for e in json.loads((out / "index.json").read_text())["shardlist"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert len(samples) == 59
    images = [s for s in samples if "json" in s and s["json"]["modality"] == "image"]
    assert len(images) == 40
    for s in images:
        ext = next(k for k in s if k in ("jpg", "png", "webp", "gif"))
        assert s[ext].size == (s["json"]["width"], s["json"]["height"])
        assert isinstance(s["cls"], int) and s["npy"].shape == (64,)


def test_hugging_face_datasets_loads_the_shards(built, tmp_path, monkeypatch):
    from datasets import load_dataset

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = built[0]
    index = json.loads((out / "index.json").read_text())["shardlist"]
    by_layout: dict[str, list[str]] = {}
    for e in index:
        with tarfile.open(out / e["url"]) as tar:
            layout = ",".join(sorted({n.split(".", 1)[1] for n in tar.getnames()}))
        by_layout.setdefault(layout, []).append(str(out / e["url"]))
    loaded = 0
    for files in by_layout.values():
        ds = load_dataset("webdataset", data_files={"train": files}, split="train",
                          cache_dir=str(tmp_path / "hf"))
        loaded += len(ds)
        row = ds[0]
        assert row["json"]["sha256"].startswith(row["__key__"])
    assert loaded == 59


def test_labels_follow_the_shapes_named_in_captions(built):
    out = built[0]
    labels = ["circle", "square", "triangle", "stripes"]
    hits = total = 0
    for e in json.loads((out / "index.json").read_text())["shardlist"]:
        with tarfile.open(out / e["url"]) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if not name.endswith(".json"):
                continue
            meta = json.loads(data)
            cls = int(members[name.replace(".json", ".cls")])
            if meta["modality"] == "image" and meta["meta"].get("shape") and cls >= 0:
                total += 1
                hits += labels[cls] == meta["meta"]["shape"]
    assert total >= 30 and hits / total >= 0.8


def _job_state(db: Path) -> str:
    """The job's status; "locked" when a frozen worker holds the database mid-commit (its
    job then is not finished either)."""
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute("SELECT status FROM jobs").fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            return "locked"
        raise


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_interrupted_build_resumes_to_the_same_shards(built, tmp_path, sig):
    out = tmp_path / "ds"
    # A shell that starts a command in the background hands it SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler: give the build the default disposition.
    proc = subprocess.Popen(_build_cmd(out), cwd=ROOT, env={**os.environ, **ENV},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    db = out / ".autods" / "autods.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db) as conn:
                done = conn.execute(
                    "SELECT count(*) FROM chunk_stages WHERE stage = 'ingest'").fetchone()[0]
            if done >= 2:
                break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    # Freeze the workers (each its own process group: a light one, and one for the
    # stages that import torch and snorkel) so the job cannot finish before the interrupt
    # lands, however fast the machine. A signal is delivered before its target runs
    # another instruction, so the workers can be thawed at once: the CLI, which has not
    # seen the job finish, raises KeyboardInterrupt (or is dead) whatever they do next.
    # Thawing also frees any database lock the CLI's next poll may wait on.
    workers = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(proc.pid)],
                                                  capture_output=True, text=True).stdout.split()]
    assert len(workers) == 2
    for worker in workers:
        os.killpg(worker, signal.SIGSTOP)
    try:
        assert proc.poll() is None and _job_state(db) in ("running", "locked")
    except BaseException:  # never leave frozen workers and a build polling them behind
        for worker in workers:
            os.killpg(worker, signal.SIGCONT)
        proc.kill()
        raise
    proc.send_signal(sig)
    for worker in workers:
        os.killpg(worker, signal.SIGCONT)
    code = proc.wait(timeout=120)
    assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    for worker in workers:  # their warm shutdown (after SIGKILL: their death signal)
        while subprocess.run(["pgrep", "-g", str(worker)], capture_output=True).returncode == 0:
            time.sleep(0.1)

    _build(out)

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
    assert _shard_digests(out) == _shard_digests(built[0])


def test_status_command_reads_the_job_from_the_database(built):
    out = built[0]
    env = {**os.environ, "AUTODS_DATABASE_URL": f"sqlite:///{out / '.autods' / 'autods.sqlite'}"}
    proc = subprocess.run([sys.executable, "-m", "autods.cli", "status", "1", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["status"] == "succeeded" and status["n_items"] == 68
    assert status["statuses"]["published"] == 59 and status["labelled"] >= 30
    assert status["stages"]["ingest"] == 68 and status["stages"]["shard"] == 59


def test_the_readmes_read_examples_give_every_sample(built, monkeypatch):
    """The README's "Read the dataset" block, run as written next to a built dataset of
    JPEG, PNG, WebP, GIF and text shards."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(built[0].parent / "hf-cache"))
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Read the dataset", 1)[1].split("```python\n", 1)[1]
    code = block.split("```", 1)[0]
    monkeypatch.chdir(built[0].parent)
    scope: dict = {}

    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own code

    assert sum(1 for _ in scope["samples"]) == 59
    hf = scope["hf"]
    assert sum(len(d) for d in hf.values()) == 59
    images = {layout: ext for layout in hf for ext in layout.split(",")
              if ext in ("jpg", "png", "webp", "gif")}
    assert sorted(images.values()) == ["gif", "jpg", "png", "webp"]  # each loaded apart
    for layout, ext in images.items():
        assert all(row[ext] is not None for row in hf[layout]), layout
    assert sum(n for _, n in scope["labels"].fetchall()) == 59


def test_status_reads_a_build_by_its_folder(built):
    proc = subprocess.run([sys.executable, "-m", "autods.cli", "status", "1", "--out",
                           str(built[0]), "--json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items()
                                           if not k.startswith("AUTODS_")})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["statuses"]["published"] == 59


@pytest.mark.parametrize(("args", "says"), [
    (["--lfs", "no_such_lf_module"], "no_such_lf_module"),
    (["--no-embed", "/nonexistent/photos"], "source not found"),
])
def test_a_job_that_cannot_start_fails_in_one_line_before_any_work(tmp_path, args, says):
    out = tmp_path / "ds"
    proc = subprocess.run([sys.executable, "-m", "autods.cli", "build", str(SAMPLE / "images"),
                           *args, "--out", str(out), "--quiet", "--workers", "1"], cwd=ROOT,
                          env={**os.environ, **ENV}, capture_output=True, text=True, timeout=300)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert says in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    with sqlite3.connect(out / ".autods" / "autods.sqlite") as db:
        assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM items").fetchone()[0] == 0


def test_lfs_that_do_not_load_stop_the_build_in_one_line_and_it_resumes_once_fixed(tmp_path):
    """The module exists, so the CLI sends the job (it does not import Snorkel to check it);
    the worker of the label queue loads it before it forks and refuses. The ingested work is
    kept: the same command, once the module loads, resumes that job."""
    (tmp_path / "my_lfs.py").write_text("raise ValueError('no vocabulary file')\n")
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "autods.cli", "build", str(SAMPLE / "images"), "--no-embed",
           "--lfs", "my_lfs", "--out", str(out), "--quiet", "--workers", "1"]
    env = {**os.environ, **ENV, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "labelling module 'my_lfs' does not load: ValueError: no vocabulary file" in \
        proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr

    (tmp_path / "my_lfs.py").write_text((ROOT / "examples" / "sample_lfs.py").read_text())
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with sqlite3.connect(out / ".autods" / "autods.sqlite") as db:
        assert db.execute("SELECT id, status FROM jobs").fetchall() == [(1, "succeeded")]
        names = {n for (n,) in db.execute("SELECT DISTINCT name FROM labels")}
    assert names - {None} == {"circle", "square", "triangle", "stripes"}  # None: abstained


def _report(out: Path, html: Path) -> None:
    proc = subprocess.run([str(Path(sys.executable).parent / "autods"), "report", str(out),
                           "--out", str(html)], cwd=ROOT, env={**os.environ, **ENV},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _cells(driver, selector: str) -> list[list[str]]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map("
        "r => Array.from(r.cells).map(c => c.textContent.trim()));", selector)


def test_the_report_shows_the_build_and_opens_in_a_browser(built, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from tests.browser import chromium, load_seconds, page_problems

    out, _ = built
    html = tmp_path / "report.html"
    _report(out, html)
    assert html.stat().st_size < 20e6
    with sqlite3.connect(out / ".autods" / "autods.sqlite") as db:
        kept_of = dict(db.execute(
            "SELECT d.uri, k.uri FROM items d JOIN items k ON k.id = d.duplicate_of"))
        labels = dict(db.execute(
            "SELECT l.name, count(*) FROM labels l JOIN items i ON i.id = l.item_id "
            "WHERE i.status = 'published' AND l.name IS NOT NULL GROUP BY l.name"))
        embedded = db.execute(
            "SELECT count(*) FROM items i JOIN features f ON f.asset_id = i.asset_id "
            "WHERE i.status = 'published' AND f.embedding_key IS NOT NULL "
            "GROUP BY f.embedding_model ORDER BY 1 DESC").fetchone()[0]
    with chromium() as driver:
        driver.get(html.as_uri())
        assert page_problems(driver) == []
        print(f"report of the sample: {html.stat().st_size / 1e6:.2f} MB, "
              f"loaded in {load_seconds(driver):.2f} s")
        funnel = {(r[0], r[1]): int(r[2].replace(",", ""))
                  for r in _cells(driver, "table.funnel tr")[1:]}
        assert funnel == {("inputs", "every listed input"): 68,
                          ("rejected", "corrupt_image"): 1, ("rejected", "not_an_image"): 1,
                          ("duplicate", "rule sha256"): 4, ("duplicate", "rule phash"): 3,
                          ("published", "samples in shards"): 59}
        for section in ("funnel", "duplicates", "rejects", "labels", "timing", "embeddings"):
            element = driver.find_element(By.ID, section)
            assert element.is_displayed()
            assert not element.find_elements(By.CSS_SELECTOR, ":scope > p.empty"), section
        clusters = driver.find_elements(By.CSS_SELECTOR, ".cluster")
        assert len(clusters) == len(set(kept_of.values())) == 7
        for cluster in clusters:
            kept, *absorbed = [t.get_attribute("title")
                               for t in cluster.find_elements(By.CSS_SELECTOR, ".tile")]
            assert absorbed and all(kept_of[uri] == kept for uri in absorbed)
        headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#labels h3")]
        for name, count in labels.items():
            assert any(h.startswith(f"{name}: {count} (") for h in headings), (name, headings)
        lf_rows = _cells(driver, "#labels table tr")
        assert any(r and r[0] == "lf_circle_words" for r in lf_rows), lf_rows
        stages = {r[0]: r[2] for r in _cells(driver, "#timing table tr")[1:5]}
        assert stages == {"ingest": "68", "preprocess": "68", "embed": "68", "label": "68"}
        points = driver.find_elements(By.CSS_SELECTOR, ".map circle")
        assert len(points) == embedded
        ActionChains(driver).move_to_element(points[0]).perform()
        hover = driver.find_element(By.ID, "hover")
        assert hover.is_displayed() and hover.text.split(" · ")[0] == \
            points[0].get_attribute("data-caption").split(" · ")[0]
