"""The curation commands (issue #12): ``exemplar propose``, ``verify``, ``curate`` and
``classes``, run through typer's CliRunner on small digits projects, each checked by what
it leaves in the database and in ``exemplar.toml``."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exemplar.cli.main import app
from exemplar.project import Project
from exemplar.project.curation import operation, verification
from exemplar.store.curation import curated_items
from exemplar.store.labels import current_labels
from exemplar.store.schema import CurationOperation, Label, LabelSource, LabelStatus
from loop_helpers import CLASSES, digits_npz, make_project

runner = CliRunner()
ENV = {"COLUMNS": "200"}


def _run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input, env=ENV)
    return result.exit_code, result.output


def _ok(*args: str, input: str | None = None) -> str:
    code, out = _run(*args, input=input)
    assert code == 0, out
    assert "Traceback" not in out
    return out


def _fails(*args: str, input: str | None = None) -> str:
    """A command that must fail with one clear error line and no traceback."""
    code, out = _run(*args, input=input)
    assert code == 2, out
    assert "Traceback" not in out and "internal error" not in out
    assert out.strip().splitlines()[-1].startswith("error: "), out
    return out


def _trained(root: Path) -> Path:
    """A simulated digits project after two cycles: about 30 labels and a model."""
    with make_project(root, n=200, budget=60) as project:
        project.run(2)
    return root


def _labeled(root: Path) -> Path:
    """200 digits, every one imported with its verified label (no model)."""
    with Project.init(root, CLASSES, oracle={"kind": "human"}) as project:
        project.import_(digits_npz(root.parent / f"{root.name}.npz", 200), label_column="y")
    return root


def _current(root: Path) -> dict[int, str | None]:
    with Project.open(root) as project, project.db.read() as s:
        return {c.item_id: c.label for c in current_labels(s)}


# -- propose and verify -------------------------------------------------------------------


def test_propose_then_verify_accept_reject_quit(tmp_path: Path) -> None:
    root = _trained(tmp_path / "p")
    out = _ok("propose", "-p", str(root), "--sample", "10")
    assert "proposed 10 label(s)" in out and "exemplar verify" in out
    with Project.open(root) as project:
        first, second = verification(project, limit=2)["items"]
        with project.db.read() as s:
            proposed = s.scalars(
                select(Label).where(Label.status == LabelStatus.PROPOSED.value)
            ).all()
    assert len(proposed) == 10 and all(r.source == LabelSource.MODEL for r in proposed)

    out = _ok("verify", "-p", str(root), "--reviewer", "ann", input="y\nn\nq\n")
    assert f"item {first['item_id']}" in out and f"item {second['item_id']}" in out
    assert "verified 1, corrected 0, rejected 1, skipped 0; 8 left in the queue" in out
    with Project.open(root) as project, project.db.read() as s:
        verified = s.scalars(
            select(Label).where(Label.annotator == "ann", Label.status == LabelStatus.VERIFIED)
        ).all()
        rejected = s.scalars(
            select(Label).where(Label.annotator == "ann", Label.status == LabelStatus.REJECTED)
        ).all()
        assert verification(project, limit=0)["total"] == 8
    assert [(r.item_id, r.label) for r in verified] == [(first["item_id"], first["label"])]
    assert verified[0].source == LabelSource.HUMAN and verified[0].strategy == "curation:verify"
    assert [r.item_id for r in rejected] == [second["item_id"]]
    assert _current(root)[first["item_id"]] == first["label"]
    assert second["item_id"] not in _current(root)  # rejected: back in the pool, unlabeled


def test_verify_fixes_a_class_as_hard_negative_with_filters(tmp_path: Path) -> None:
    root = _trained(tmp_path / "p")
    _ok("propose", "-p", str(root), "--sample", "40")
    with Project.open(root) as project:
        queue = verification(project, order="confident", min_confidence=0.5, limit=100)
    assert queue["total"] >= 2
    top = queue["items"][0]
    other = next(c for c in CLASSES if c != top["label"])
    # An unknown answer is asked again; a class name fixes the class; the end of the
    # input quits like q.
    out = _ok(
        "verify",
        *("-p", str(root), "--order", "confident", "--min-confidence", "0.5"),
        input=f"banana\n{other}\ns\n",
    )
    assert f"{queue['total']} proposal(s) to verify" in out
    assert "unknown answer 'banana'" in out
    assert "verified 0, corrected 1, rejected 0, skipped 1" in out
    with Project.open(root) as project, project.db.read() as s:
        newest = s.scalars(
            select(Label).where(Label.item_id == top["item_id"]).order_by(Label.id.desc())
        ).first()
    assert newest is not None and newest.label == other
    assert newest.status == LabelStatus.VERIFIED and newest.hard_negative is True

    label = queue["items"][1]["label"]
    out = _ok("verify", "-p", str(root), "--class", label, "--order", "class", input="q\n")
    with Project.open(root) as project:
        assert f"{verification(project, label=label, limit=0)['total']} proposal(s)" in out
    assert "no proposal matches the filters" in _ok(
        "verify", "-p", str(root), "--min-confidence", "1.0", "--max-confidence", "1.0"
    )


def test_propose_and_verify_errors_are_one_line(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    make_project(root, n=60).close()
    assert "no trained model yet" in _fails("propose", "-p", str(root))
    assert "run `exemplar propose` first" in _ok("verify", "-p", str(root))
    assert "unknown class 'cat'" in _fails("verify", "-p", str(root), "--class", "cat")
    assert "--order 'random'" in _fails("verify", "-p", str(root), "--order", "random")
    _fails("verify", "-p", str(tmp_path / "nowhere"))


# -- curate: operations -------------------------------------------------------------------


def test_curate_find_review_apply_and_undo(tmp_path: Path) -> None:
    root = _trained(tmp_path / "p")
    before = _current(root)
    out = _ok("curate", "-p", str(root))  # no command: find
    assert "operation(s) recorded" in out and "exemplar curate review ID" in out
    ops = json.loads(_ok("curate", "list", "-p", str(root), "--json"))
    kinds = {op["kind"]: op for op in ops}
    assert set(kinds) <= {"label_errors", "prune"} and "label_errors" in kinds
    errors = kinds["label_errors"]
    assert errors["status"] == "proposed" and errors["candidates"]["pending"] >= 2
    # The group's -p carries to its commands.
    listed = json.loads(_ok("curate", "-p", str(root), "list", "--kind", "label_errors", "--json"))
    assert [op["id"] for op in listed] == [errors["id"]]

    op_id = str(errors["id"])
    shown = json.loads(_ok("curate", "show", op_id, "-p", str(root), "--limit", "2", "--json"))
    assert len(shown["items"]) == 2
    table = _ok("curate", "show", op_id, "-p", str(root))
    assert "confident_learning" in table and shown["items"][0]["uri"][-30:] in table
    assert "no accepted candidate" in _fails("curate", "apply", op_id, "-p", str(root))

    # Accept the first, decline the second, quit, then apply.
    out = _ok("curate", "review", op_id, "-p", str(root), "--reviewer", "ann", input="y\nn\nq\ny\n")
    assert "applied operation" in out and "1 label(s) written" in out
    accepted, declined = shown["items"]
    with Project.open(root) as project:
        done = operation(project, errors["id"])
    assert done["status"] == "applied"
    decisions = {c["id"]: (c["decision"], c["decided_by"]) for c in done["items"]}
    assert decisions[accepted["id"]] == ("accepted", "ann")
    assert decisions[declined["id"]] == ("declined", "ann")
    after = _current(root)
    assert after[accepted["item_id"]] == accepted["suggested_label"] != before[accepted["item_id"]]
    assert after[declined["item_id"]] == before[declined["item_id"]]

    assert "undid operation" in _ok("curate", "undo", op_id, "-p", str(root))
    assert _current(root) == before
    assert "is undone, not applied" in _fails("curate", "undo", op_id, "-p", str(root))
    assert "no curation operation 999" in _fails("curate", "show", "999", "-p", str(root))


def test_curate_prune_all_pending_dismiss_and_options(tmp_path: Path) -> None:
    root = _labeled(tmp_path / "p")
    before = _current(root)
    out = _ok("curate", "find", "-p", str(root), "--steps", "prune")
    assert "prune" in out and "label_errors" not in out
    with Project.open(root) as project, project.db.read() as s:
        prune = s.scalars(select(CurationOperation)).one()
    assert prune.kind == "prune"
    pending = sum(
        json.loads(_ok("curate", "list", "-p", str(root), "--json"))[0]["candidates"].values()
    )

    out = _ok("curate", "apply", str(prune.id), "--all-pending", "-p", str(root))
    assert f"{pending} label(s) written" in out
    with Project.open(root) as project, project.db.read() as s:
        pruned = curated_items(s)
    assert len(pruned) == pending and all(before[i] == c for i, c in pruned.items())
    assert len(_current(root)) == len(before) - pending
    _ok("curate", "undo", str(prune.id), "-p", str(root))
    assert _current(root) == before

    _ok("curate", "find", "-p", str(root), "--steps", "prune")
    newest = json.loads(_ok("curate", "list", "-p", str(root), "--status", "proposed", "--json"))
    assert len(newest) == 1
    assert "no label changed" in _ok("curate", "dismiss", str(newest[0]["id"]), "-p", str(root))
    assert _current(root) == before
    assert json.loads(_ok("curate", "list", "-p", str(root), "--status", "dismissed", "--json"))

    assert "--steps 'typos'" in _fails("curate", "-p", str(root), "--steps", "typos")
    assert "would be ignored" in _fails("curate", "--steps", "prune", "list", "-p", str(root))
    help_text = _ok("curate", "--help")
    for command in ("find", "list", "show", "review", "apply", "dismiss", "undo"):
        assert f"exemplar curate {command}" in help_text or f" {command} " in help_text
    assert "--all-pending" in help_text


# -- classes ------------------------------------------------------------------------------


def test_classes_split_apply_and_undo(tmp_path: Path) -> None:
    root = _labeled(tmp_path / "p")
    before = _current(root)
    ones = {i for i, c in before.items() if c == "1"}

    out = _ok("classes", "split", "1", "-p", str(root), "--n", "2")
    assert "1_1" in out and "1_2" in out and "silhouette" in out
    assert "exemplar curate apply" in out and "--all-pending" in out
    with Project.open(root) as project:
        assert project.classes == CLASSES  # proposed only

    out = _ok("classes", "split", "1", "-p", str(root), "--into", "one_a,one_b", "--apply")
    assert f"{len(ones)} label(s) written" in out
    with Project.open(root) as project:
        assert project.classes == ["0", "one_a", "one_b", *CLASSES[2:]]
        with project.db.read() as s:
            split_op = s.scalars(
                select(CurationOperation).where(CurationOperation.status == "applied")
            ).one()
    after = _current(root)
    assert {after[i] for i in ones} == {"one_a", "one_b"}
    assert {i: c for i, c in after.items() if i not in ones} == {
        i: c for i, c in before.items() if i not in ones
    }
    sizes = Counter(after[i] for i in ones)
    rows = [line for line in out.splitlines() if " one_a " in line or " one_b " in line]
    assert any(str(sizes["one_a"]) in line for line in rows if " one_a " in line)

    listed = json.loads(_ok("classes", "list", "-p", str(root), "--json"))
    assert {r["class"]: r["verified"] for r in listed}["one_b"] == sizes["one_b"]

    _ok("curate", "undo", str(split_op.id), "-p", str(root))
    with Project.open(root) as project:
        assert "1" in project.classes and "one_a" not in project.classes
    assert _current(root) == before

    assert "not both" in _fails(
        "classes", "split", "1", "-p", str(root), "--into", "a,b", "--n", "2"
    )
    assert "unknown class 'zz'" in _fails("classes", "split", "zz", "-p", str(root))


def test_classes_merge_and_list(tmp_path: Path) -> None:
    root = _labeled(tmp_path / "p")
    before = _current(root)
    moved = {i for i, c in before.items() if c in ("3", "8")}
    out = _ok("classes", "merge", "3,8", "--into", "38", "-p", str(root))
    assert "exemplar curate apply" in out
    with Project.open(root) as project:
        assert project.classes == CLASSES
    out = _ok("classes", "merge", "3,8", "--into", "38", "-p", str(root), "--apply")
    assert f"{len(moved)} label(s) written" in out
    with Project.open(root) as project:
        assert "38" in project.classes and "3" not in project.classes and "8" not in project.classes
    after = _current(root)
    assert {after[i] for i in moved} == {"38"}

    table = _ok("classes", "list", "-p", str(root))
    line = next(line for line in table.splitlines() if "│ 38 " in line)
    assert f" {len(moved)} " in line
    assert "unknown class '3'" in _fails("classes", "merge", "3,5", "--into", "35", "-p", str(root))
