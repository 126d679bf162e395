"""``import_path``: every input kind, every bad-input case, dedupe, and crash consistency.

Store-touching tests run on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from exemplar.errors import ConfigError, DatasetError, ProjectError
from exemplar.project.importing import ImportReport, import_path
from exemplar.project.project import Project
from exemplar.sources.base import Problem, feature_uid, text_uid
from exemplar.sources.features import image_features, text_features
from exemplar.store.arrays import ArrayStore
from exemplar.store.labels import current_labels
from exemplar.store.schema import Item, Label, LabelSource, LabelStatus

CLASSES = ["a", "b", "c"]


@pytest.fixture
def project(tmp_path: Path, database_url: str) -> Iterator[Project]:
    proj = Project.init(tmp_path / "p", CLASSES, database_url=database_url)
    yield proj
    proj.close()


# --------------------------------------------------------------------------- helpers


def make_png(path: Path, seed: int, size: tuple[int, int] = (12, 10)) -> Path:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path)
    return path


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def items(project: Project) -> list[Item]:
    with project.db.session() as s:
        return list(s.scalars(select(Item).order_by(Item.row)))


def label_rows(project: Project) -> list[Label]:
    with project.db.session() as s:
        return list(s.scalars(select(Label).order_by(Label.id)))


def current(project: Project) -> dict[int, str | None]:
    """Current label by item row."""
    with project.db.session() as s:
        return {c.row: c.label for c in current_labels(s)}


def assert_consistent(project: Project) -> None:
    """Items, meta n_rows and the feature file agree."""
    rows = [it.row for it in items(project)]
    assert rows == list(range(project.n_rows))
    if project.n_rows:
        assert project.features().shape == (project.n_rows, project.feature_dim)


def skipped_at(report: ImportReport, where: str) -> str:
    reasons = [why for w, why in report.skipped if w == where]
    assert reasons, f"{where} not in {report.skipped}"
    return reasons[0]


# --------------------------------------------------------------------------- images


def test_image_folder_with_class_subfolders(project: Project, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    files = [
        make_png(root / c / f"{i}.png", seed=10 * k + i)
        for k, c in enumerate("ab")
        for i in range(3)
    ]
    loose = make_png(root / "loose.png", seed=99)
    report = import_path(project, root)
    assert report.added == 7 and report.duplicates == 0 and report.skipped == []
    assert report.labeled == 6 and report.kinds == {"image": 7}
    size = project.config.data.image_size
    assert project.feature_dim == size * size and project.n_rows == 7
    stored = {Path(it.uri): it for it in items(project)}
    for path in [*files, loose]:
        item = stored[path.resolve()]
        assert item.kind == "image"
        assert item.uid == hashlib.sha256(path.read_bytes()).hexdigest()
        np.testing.assert_allclose(
            project.features()[item.row], image_features(path.read_bytes(), size)
        )
    labels = current(project)
    assert stored[loose.resolve()].row not in labels
    for path in files:
        assert labels[stored[path.resolve()].row] == path.parent.name
    rows = label_rows(project)
    assert {r.source for r in rows} == {LabelSource.IMPORT}
    assert {r.status for r in rows} == {LabelStatus.VERIFIED}
    X = np.asarray(project.features())
    assert X.min() >= 0.0 and X.max() <= 1.0


def test_image_features_are_grayscale_resized_flattened() -> None:
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    row = image_features(buf.getvalue(), 8)
    assert row.shape == (64,) and row.dtype == np.float32
    np.testing.assert_allclose(row, 1.0)


def test_corrupt_image_is_reported_and_others_import(project: Project, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    make_png(root / "a" / "good1.png", 1)
    make_png(root / "b" / "good2.png", 2)
    bad = root / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    truncated = root / "b" / "truncated.png"
    truncated.write_bytes(make_png(tmp_path / "full.png", 3).read_bytes()[:60])
    notes = root / "notes.txt"
    notes.write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0\0")
    report = import_path(project, root)
    assert report.added == 2
    assert "not a readable image" in skipped_at(report, str(bad))
    assert "not a readable image" in skipped_at(report, str(truncated))
    assert "not an image file" in skipped_at(report, str(notes))
    assert len(report.skipped) == 3  # hidden files are ignored silently
    assert_consistent(project)


def test_unknown_class_folder_is_skipped_and_reported(project: Project, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    make_png(root / "a" / "1.png", 1)
    dog = make_png(root / "dog" / "2.png", 2)
    report = import_path(project, root)
    assert report.added == 1
    why = skipped_at(report, str(dog))
    assert "unknown class 'dog'" in why and "a, b, c" in why
    with project.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 1


def test_folder_labels_can_be_turned_off(project: Project, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    make_png(root / "2024-01" / "1.png", 1)
    report = import_path(project, root, folder_labels=False)
    assert report.added == 1 and report.labeled == 0 and report.skipped == []


def test_folder_without_images_is_an_error(project: Project, tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    (root / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match="no image files"):
        import_path(project, root)


def test_label_column_is_refused_for_images(project: Project, tmp_path: Path) -> None:
    make_png(tmp_path / "imgs" / "1.png", 1)
    with pytest.raises(DatasetError, match="label_column applies to tables"):
        import_path(project, tmp_path / "imgs", label_column="label")


# --------------------------------------------------------------------------- CSV


def test_csv_features_and_labels(project: Project, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "d.csv",
        "x1,name,x2,Label",
        ["1.5,foo,2,a", "3,bar,4.25,b", "5,baz,6,", "7,qux,8,c"],
    )
    report = import_path(project, path)
    assert report.added == 4 and report.labeled == 3 and report.skipped == []
    assert any("ignored columns: name" in n for n in report.notes)
    np.testing.assert_array_equal(
        project.features(), np.array([[1.5, 2], [3, 4.25], [5, 6], [7, 8]], dtype=np.float32)
    )
    assert current(project) == {0: "a", 1: "b", 3: "c"}
    stored = items(project)
    assert stored[1].uri == f"{path.resolve()}#L3"
    assert stored[1].uid == feature_uid(np.array([3, 4.25]))
    assert all(it.kind == "features" for it in stored)


def test_malformed_csv_lines_are_reported_with_line_numbers(
    project: Project, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "bad.csv",
        "f1,f2,label",
        [
            "1,2,a",  # line 2
            "3,4",  # line 3: ragged
            "5,six,b",  # line 4: not a number
            "7,,c",  # line 5: missing value
            "nan,1,a",  # line 6: NaN
            "1e300,1,a",  # line 7: too large for float32
            "9,10,zebra",  # line 8: unknown class
            "",  # line 9: blank, ignored
            "11,12,b",  # line 10
        ],
    )
    report = import_path(project, path, batch_size=3)
    assert report.added == 2
    assert "expected 3 fields" in skipped_at(report, f"{path}:3")
    assert "'six' is not a number" in skipped_at(report, f"{path}:4")
    assert "missing value" in skipped_at(report, f"{path}:5")
    assert "NaN" in skipped_at(report, f"{path}:6")
    assert "float32" in skipped_at(report, f"{path}:7")
    why = skipped_at(report, f"{path}:8")
    assert "unknown class 'zebra'" in why and "a, b, c" in why
    assert [where for where, _ in report.skipped] == [f"{path}:{n}" for n in range(3, 9)]
    np.testing.assert_array_equal(project.features(), [[1, 2], [11, 12]])
    assert [it.uri.rsplit("#", 1)[1] for it in items(project)] == ["L2", "L10"]


def test_csv_line_that_is_not_utf8_is_reported(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "enc.csv"
    path.write_bytes(b"f1,f2\n1,2\n3,\xff\xfe4\n5,6\n")
    report = import_path(project, path)
    assert report.added == 2
    assert "UTF-8" in skipped_at(report, f"{path}:3")


def test_csv_whole_file_problems_raise(project: Project, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="label column 'nope' not found"):
        import_path(project, write_csv(tmp_path / "a.csv", "x,y", ["1,2"]), label_column="nope")
    with pytest.raises(DatasetError, match="no numeric feature columns"):
        import_path(project, write_csv(tmp_path / "b.csv", "name,label", ["foo,a"]))
    with pytest.raises(DatasetError, match="no readable data rows"):
        import_path(project, write_csv(tmp_path / "c.csv", "x,y", []))
    with pytest.raises(DatasetError, match="semicolons"):
        import_path(project, write_csv(tmp_path / "d.csv", "x;y", ["1;2"]))
    with pytest.raises(DatasetError, match="does not exist"):
        import_path(project, tmp_path / "missing.csv")
    (tmp_path / "e.xlsx").write_bytes(b"x")
    with pytest.raises(DatasetError, match="unsupported file type"):
        import_path(project, tmp_path / "e.xlsx")
    assert project.n_rows == 0 and items(project) == []


def test_text_csv(project: Project, tmp_path: Path) -> None:
    texts = ["the cat sat", "a dog barked", "hello, world", "the cat sat"]
    path = tmp_path / "t.csv"
    path.write_text(
        'id,text,label\n1,the cat sat,a\n2,a dog barked,b\n3,"hello, world",\n4,the cat sat,a\n'
        "5,  ,a\n",
        encoding="utf-8",
    )
    report = import_path(project, path)
    n = project.config.data.text_features
    assert project.feature_dim == n
    assert report.added == 3 and report.duplicates == 1 and report.kinds == {"text": 3}
    assert skipped_at(report, f"{path}:6") == "empty text"
    stored = items(project)
    assert [it.text for it in stored] == texts[:3]
    assert [it.uid for it in stored] == [text_uid(t) for t in texts[:3]]
    np.testing.assert_allclose(project.features(), text_features(texts[:3], n), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(project.features(), axis=1), 1.0, rtol=1e-5)
    assert current(project) == {0: "a", 1: "b"}


def test_text_column_by_name(project: Project, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", "body,y", ["spam spam,a", "eggs,b"])
    report = import_path(project, path, text_column="body")
    assert report.kinds == {"text": 2} and report.labeled == 2
    with pytest.raises(DatasetError, match="text column 'nope' not found"):
        import_path(project, path, text_column="nope")


# --------------------------------------------------------------------------- parquet / arrays


def test_parquet_features(project: Project, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "f1": [1.0, 2.0, None, 4.0],
            "f2": [1, 2, 3, 4],
            "flag": [True, False, None, True],
            "note": ["x", "y", "z", "w"],
            "class": ["a", "b", "c", "zebra"],
        }
    )
    path = tmp_path / "d.parquet"
    pq.write_table(table, path)
    report = import_path(project, path, batch_size=2)
    assert report.added == 2 and report.labeled == 2
    assert "f1" in skipped_at(report, f"{path}#row2")
    assert "unknown class 'zebra'" in skipped_at(report, f"{path}#row3")
    assert any("ignored columns: note" in n for n in report.notes)
    np.testing.assert_array_equal(project.features(), [[1, 1, 1], [2, 2, 0]])
    assert items(project)[1].uri == f"{path.resolve()}#row1"


def test_parquet_text(project: Project, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["one fish", "two fish"], "label": ["a", "b"]}), path)
    report = import_path(project, path)
    assert report.kinds == {"text": 2} and report.labeled == 2
    assert [it.text for it in items(project)] == ["one fish", "two fish"]


def test_npz_with_string_labels(project: Project, tmp_path: Path) -> None:
    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    X[2, 1] = np.nan
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=np.array(["a", "b", "c", ""]))
    report = import_path(project, path)
    assert report.added == 3 and report.labeled == 2
    assert "NaN" in skipped_at(report, f"{path}#row2")
    np.testing.assert_array_equal(project.features(), X[[0, 1, 3]].astype(np.float32))
    assert current(project) == {0: "a", 1: "b"}


def test_npy_integer_labels_against_named_classes(tmp_path: Path, database_url: str) -> None:
    arr = np.array([[0.5, 1.0, 0], [1.5, 2.0, 1], [2.5, 3.0, 7]])
    path = tmp_path / "d.npy"
    np.save(path, arr)
    with Project.init(tmp_path / "p", ["0", "1"], database_url=database_url) as project:
        report = import_path(project, path, label_column=-1)
        assert report.added == 2 and report.labeled == 2
        assert "unknown class '7'" in skipped_at(report, f"{path}#row2")
        assert current(project) == {0: "0", 1: "1"}


def test_npy_pickle_is_refused(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="pickle"):
        import_path(project, path)


# --------------------------------------------------------------------------- semantics


def test_reimport_adds_nothing(project: Project, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "f1,f2,label", ["1,2,a", "3,4,b", "1,2,a"])
    first = import_path(project, path)
    assert (first.added, first.duplicates) == (2, 1)
    second = import_path(project, path)
    assert (second.added, second.duplicates, second.labeled) == (0, 3, 0)
    assert project.n_rows == 2 and len(label_rows(project)) == 2
    root = tmp_path / "imgs"
    make_png(root / "a" / "1.png", 1)
    make_png(root / "a" / "copy" / "1.png", 1)  # same bytes elsewhere
    other = Project.init(tmp_path / "imgp", CLASSES, database_url="")
    try:
        r1 = import_path(other, root)
        r2 = import_path(other, root)
        assert (r1.added, r1.duplicates) == (1, 1)
        assert (r2.added, r2.duplicates) == (0, 2)
    finally:
        other.close()


def test_dimension_mismatch_is_a_clear_error(project: Project, tmp_path: Path) -> None:
    import_path(project, write_csv(tmp_path / "a.csv", "p,q,r", ["1,2,3"]))
    with pytest.raises(ProjectError, match=r"2 features per item.*dimension is 3"):
        import_path(project, write_csv(tmp_path / "b.csv", "p,q", ["1,2"]))
    make_png(tmp_path / "imgs" / "1.png", 1)
    with pytest.raises(ProjectError, match=r"256 features per item.*dimension is 3"):
        import_path(project, tmp_path / "imgs")
    assert project.n_rows == 1


def test_ground_truth_mode(project: Project, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "f,label", ["1,a", "2,", "3,c", "4,nope"])
    report = import_path(project, path, labels_as="ground_truth")
    # Ground truth is not a label: the items are unlabeled, the oracle reads it later.
    assert report.added == 3 and report.labeled == 0 and report.ground_truth == 2
    assert len(report.skipped) == 1
    assert [it.ground_truth for it in items(project)] == ["a", None, "c"]
    assert label_rows(project) == []
    with pytest.raises(ConfigError, match="labels_as"):
        import_path(project, path, labels_as="truth")  # type: ignore[arg-type]


def test_memmap_rows_match_values_in_order_across_batches(project: Project, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(53, 5))
    lines = [",".join(repr(float(v)) for v in row) for row in X]
    path = write_csv(tmp_path / "d.csv", "a,b,c,d,e", lines)
    progress: list[tuple[int, int | None]] = []
    report = import_path(project, path, batch_size=10, on_progress=lambda *a: progress.append(a))
    assert report.added == 53
    assert [p[0] for p in progress] == [10, 20, 30, 40, 50, 53]
    np.testing.assert_array_equal(project.features(), X.astype(np.float32))
    X2 = rng.normal(size=(7, 5)).astype(np.float32)
    np.save(tmp_path / "more.npy", X2)
    import_path(project, tmp_path / "more.npy", batch_size=3)
    np.testing.assert_array_equal(project.features(), np.vstack([X.astype(np.float32), X2]))
    assert_consistent(project)


def test_crash_between_append_and_commit_leaves_project_consistent(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(10, 4)).astype(np.float32)
    labels = ["a", "b", "c", "a", "b", "c", "a", "b", "c", "a"]
    lines = [",".join(repr(float(v)) for v in row) + f",{lab}" for row, lab in zip(X, labels)]
    path = write_csv(tmp_path / "d.csv", "w,x,y,z,label", lines)

    original = ArrayStore.append_features
    calls = {"n": 0}

    def crashing(self: ArrayStore, X: np.ndarray, committed_rows: int, dim: int) -> int:
        calls["n"] += 1
        first = original(self, X, committed_rows, dim)
        if calls["n"] == 2:
            raise RuntimeError("simulated crash after the features were written")
        return first

    monkeypatch.setattr(ArrayStore, "append_features", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        import_path(project, path, batch_size=4)
    # The first batch committed; the second one's rows are an uncommitted tail.
    assert project.n_rows == 4
    assert len(items(project)) == 4 and len(label_rows(project)) == 4
    assert project.arrays.features_path.stat().st_size == 8 * 4 * 4
    assert_consistent(project)
    monkeypatch.setattr(ArrayStore, "append_features", original)

    reopened = Project.open(project.root)
    try:
        report = import_path(reopened, path, batch_size=4)
        assert (report.added, report.duplicates) == (6, 4)
        np.testing.assert_array_equal(reopened.features(), X)
        assert reopened.arrays.features_path.stat().st_size == 10 * 4 * 4
        assert current(reopened) == dict(enumerate(labels))
        assert_consistent(reopened)
    finally:
        reopened.close()


def test_bad_arguments(project: Project, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "f", ["1"])
    with pytest.raises(ConfigError, match="batch_size"):
        import_path(project, path, batch_size=0)
    np.save(tmp_path / "x.npy", np.ones((2, 2)))
    with pytest.raises(DatasetError, match="text_column applies"):
        import_path(project, tmp_path / "x.npy", text_column="t")


def test_report_summary() -> None:
    report = ImportReport(added=3, duplicates=1, labeled=2)
    report.skip(Problem("x", "y", "unreadable file"))
    report.kinds["image"] = 3
    assert report.summary() == (
        "added 3 item(s) (3 image), 2 labeled; 1 duplicate(s) not added again (same content "
        "as an item already in the project, or repeated in this input); 1 not imported: "
        "1 unreadable file(s)"
    )


def test_concurrent_imports_serialize(project: Project, tmp_path: Path) -> None:
    """Two importers at once: every item's feature row is its own content (uid matches)."""
    import threading

    rng = np.random.default_rng(2)
    paths = []
    for k in range(2):
        X = rng.normal(size=(60, 3))
        lines = [",".join(repr(float(v)) for v in row) for row in X]
        paths.append(write_csv(tmp_path / f"part{k}.csv", "p,q,r", lines))
    errors: list[BaseException] = []

    def run(path: Path) -> None:
        try:
            with Project.open(project.root) as other:
                import_path(other, path, batch_size=7)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert project.n_rows == 120
    assert_consistent(project)
    X = project.features()
    for item in items(project):
        assert item.uid == feature_uid(X[item.row])
