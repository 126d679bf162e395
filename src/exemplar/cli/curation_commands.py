"""Curation commands (issue #12): propose, verify, curate, classes.

Thin views over :mod:`exemplar.project.curation`, the facade the API and the app call too:

* ``exemplar propose``: the newest model labels a sample of the pool;
* ``exemplar verify``: the verification queue in the terminal, one key per proposal;
* ``exemplar curate``: find label errors and redundant items (recorded operations), list,
  show, review, apply, dismiss and undo operations;
* ``exemplar classes``: list classes, propose a split or a merge (applied at once with
  ``--apply``).

Nothing changes a label without a reviewer's word: an operation's candidates wait until a
reviewer accepts them (``curate review``) or confirms them in bulk (``--all-pending``,
``--apply``), and an applied operation can be undone.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer
from rich.table import Table
from rich.text import Text

from exemplar.cli.common import app, console, one_line_errors
from exemplar.errors import UsageError

if TYPE_CHECKING:
    from exemplar.project import Project

__all__ = ["classes_app", "curate_app"]

ORDERS = ("uncertain", "confident", "class")
Order = Literal["uncertain", "confident", "class"]
STEPS = ("label_errors", "prune")
#: Proposals (and candidates) fetched from the database at a time by the terminal reviews.
PAGE = 50

OptionalProject = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="The project folder (default: the current one)."),
]
Reviewer = Annotated[str, typer.Option(help="Your name, recorded with each decision.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]

curate_app = typer.Typer(
    name="curate",
    help="Find label errors and redundant items, and manage curation operations.\n\n"
    "Each finding is a recorded operation: its candidates wait for a reviewer, and no label "
    "changes until the operation is applied (undo reverts it). Without a command, "
    "`exemplar curate` runs `find`.\n\n"
    "\b\n"
    "exemplar curate -p DIR               find label errors, redundant items\n"
    "exemplar curate list -p DIR          operations, newest first\n"
    "exemplar curate show ID -p DIR       an operation and its candidates\n"
    "exemplar curate review ID -p DIR     decide candidates, one key each\n"
    "exemplar curate apply ID -p DIR      apply the accepted candidates\n"
    "exemplar curate apply ID --all-pending   accept all undecided, apply\n"
    "exemplar curate dismiss ID           close without changing labels\n"
    "exemplar curate undo ID              revert an applied operation",
    invoke_without_command=True,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
)
classes_app = typer.Typer(
    name="classes",
    help="List the classes, and split or merge them (recorded operations that can be undone).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(curate_app)
app.add_typer(classes_app)


# -- helpers ------------------------------------------------------------------------------


def _root(ctx: typer.Context | None, project: Path | None) -> Path:
    """The command's ``--project``, else the group's (``exemplar curate -p DIR list``)."""
    if project is not None:
        return project
    if ctx is not None and isinstance(ctx.obj, dict) and ctx.obj.get("project") is not None:
        return Path(ctx.obj["project"])
    return Path(".")


@contextmanager
def _opened(root: Path) -> Iterator[Project]:
    from exemplar.project import Project

    with Project.open(root) as proj:
        yield proj


def _ask(prompt: str, *, default: str | None = None) -> str:
    """One answer from the terminal; the end of the input reads as ``q`` (quit)."""
    try:
        answer = typer.prompt(prompt, default=default or "", show_default=False)
    except (typer.Abort, EOFError):
        console.print()
        return "q"
    return str(answer).strip()


def _confirm(prompt: str) -> bool:
    try:
        return bool(typer.confirm(prompt, default=False))
    except (typer.Abort, EOFError):
        console.print()
        return False


def _pick_class(answer: str, choices: Sequence[str]) -> str | None:
    """A class from an answer: its exact name, else its 1-based number in ``choices``."""
    if answer in choices:
        return answer
    if answer.isdigit() and 0 < int(answer) <= len(choices):
        return choices[int(answer) - 1]
    return None


def _menu(choices: Sequence[str]) -> str:
    """The class menu: numbered, unless class names are numbers themselves (then by name)."""
    if any(c.isdigit() for c in choices):
        return "class name: " + " ".join(choices)
    return "  ".join(f"{i + 1}={c}" for i, c in enumerate(choices))


def _clip(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _clip_left(text: str, width: int) -> str:
    """A path or URI on one line, its end kept (the file name and row tell items apart)."""
    line = " ".join(text.split())
    return line if len(line) <= width else "…" + line[len(line) - width + 1 :]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _counts(counts: dict[str, int]) -> str:
    order = ("pending", "accepted", "declined")
    keys = [k for k in order if counts.get(k)] + sorted(k for k in counts if k not in order)
    return ", ".join(f"{counts[k]} {k}" for k in keys) or "none"


def _steps(raw: str) -> list[str]:
    steps = [s.strip().replace("-", "_") for s in raw.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if not steps or unknown:
        raise UsageError(f"--steps {raw!r}: expected a comma-separated list of {', '.join(STEPS)}")
    return list(dict.fromkeys(steps))


def _project_flag(root: Path) -> str:
    return "" if root == Path(".") else f" -p {root}"


# -- propose and verify -------------------------------------------------------------------


@app.command()
@one_line_errors
def propose(
    project: OptionalProject = None,
    sample: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Pool items to label (default: propose_sample in the curation section; 0: all).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the pool sample.")] = 0,
) -> None:
    """The newest model proposes labels on a sample of the pool (verify them next)."""
    from exemplar.project.curation import propose_now, verification

    root = _root(None, project)
    with _opened(root) as proj:
        result = propose_now(proj, sample=sample, seed=seed)
        total = verification(proj, limit=0)["total"]
    console.print(
        f"model {result['model_version']} proposed {result['proposed']} label(s); "
        f"{total} proposal(s) wait for verification: `exemplar verify{_project_flag(root)}`",
        highlight=False,
    )


@app.command()
@one_line_errors
def verify(
    project: OptionalProject = None,
    order: Annotated[
        str,
        typer.Option(
            help="uncertain (least confident first, classes interleaved), confident "
            "(most confident first) or class (grouped by class)."
        ),
    ] = "uncertain",
    min_confidence: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Only proposals at least this sure.")
    ] = None,
    max_confidence: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Only proposals at most this sure.")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--class", help="Only proposals of this class.")
    ] = None,
    reviewer: Reviewer = "cli",
) -> None:
    """Verify the model's proposals in the terminal, one key each.

    Enter or y accepts the proposed class, n rejects it, a class name (or its number)
    accepts the item with that class instead, s skips, q quits. A confident proposal
    corrected to another class is kept as a hard negative; a rejected object proposal
    that was confident is kept as a hard negative region.
    """
    from exemplar.project.curation import reject, verification
    from exemplar.project.curation import verify as verify_proposal
    from exemplar.store.curation import CurationError

    if order not in ORDERS:
        raise UsageError(f"--order {order!r}: expected one of {', '.join(ORDERS)}")
    root = _root(None, project)
    with _opened(root) as proj:
        classes = list(proj.classes)
        if label is not None and label not in classes:
            raise UsageError(f"unknown class {label!r}; the classes are {', '.join(classes)}")
        queue = functools.partial(
            verification,
            proj,
            order=cast(Order, order),
            min_confidence=min_confidence,
            max_confidence=max_confidence,
            label=label,
        )
        total = queue(limit=0)["total"]
        if not total:
            filtered = any(v is not None for v in (min_confidence, max_confidence, label))
            console.print(
                "no proposal matches the filters"
                if filtered
                else "no proposal to verify: run `exemplar propose` first",
                highlight=False,
            )
            return
        console.print(f"{total} proposal(s) to verify")
        prompt = f"y/Enter=accept  n=reject  {_menu(classes)}  s=skip  q=quit"
        tally: Counter[str] = Counter()
        seen: set[tuple[str, int]] = set()
        shown = 0
        while True:
            page = queue(limit=len(seen) + PAGE)
            fresh = [p for p in page["items"] if (p["kind"], p["id"]) not in seen]
            if not fresh:
                break
            for p in fresh:
                seen.add((p["kind"], p["id"]))
                shown += 1
                _show_proposal(p, shown, total)
                answer = _ask(prompt, default="y")
                while (
                    answer.lower() not in ("", "y", "n", "s", "q")
                    and _pick_class(answer, classes) is None
                ):
                    console.print(Text(f"unknown answer {answer!r}", style="yellow"))
                    answer = _ask(prompt, default="y")
                key = answer.lower()
                if key == "q":
                    _verify_summary(tally, queue(limit=0)["total"])
                    return
                if key == "s":
                    tally["skipped"] += 1
                    continue
                chosen = None if key in ("", "y", "n") else _pick_class(answer, classes)
                try:
                    if key == "n":
                        reject(proj, p["kind"], p["id"], reviewer=reviewer)
                    else:
                        verify_proposal(proj, p["kind"], p["id"], reviewer=reviewer, label=chosen)
                except CurationError as exc:  # somebody else decided it meanwhile
                    console.print(Text(f"skipped: {exc}", style="yellow"), highlight=False)
                    tally["skipped"] += 1
                    continue
                if key == "n":
                    tally["rejected"] += 1
                else:
                    tally["corrected" if chosen not in (None, p["label"]) else "verified"] += 1
        _verify_summary(tally, queue(limit=0)["total"])


def _show_proposal(p: dict[str, Any], k: int, total: int) -> None:
    where = f"item {p['item_id']}"
    if p["kind"] == "object":
        box = ", ".join(f"{v:.0f}" for v in p["box"] or [])
        where = f"object {p['id']} on item {p['item_id']} [{box}]"
    console.print(
        Text.assemble(
            (f"\n[{k}/{total}] ", "dim"),
            (where, "bold"),
            f" ({p['kind_of_item']}) {p['uri']}",
        ),
        highlight=False,
    )
    if p.get("text"):
        console.print(Text(_clip(p["text"], 300)), highlight=False)
    console.print(
        Text.assemble(
            "proposed ",
            (str(p["label"]), "bold"),
            f"  confidence {_fmt(p['confidence'])}  model {p['model_version'] or '—'}",
        ),
        highlight=False,
    )


def _verify_summary(tally: Counter[str], left: int) -> None:
    console.print(
        f"verified {tally['verified']}, corrected {tally['corrected']}, "
        f"rejected {tally['rejected']}, skipped {tally['skipped']}; {left} left in the queue"
    )


# -- curate: operations -------------------------------------------------------------------


@curate_app.callback()
@one_line_errors
def curate_main(
    ctx: typer.Context,
    project: OptionalProject = None,
    steps: Annotated[
        str, typer.Option(help="What `find` looks for: label_errors, prune, or both.")
    ] = "label_errors,prune",
    reviewer: Annotated[str, typer.Option(help="Recorded as the operations' author.")] = "cli",
    seed: Annotated[int, typer.Option(help="Seed of the out-of-fold models.")] = 0,
) -> None:
    """Without a command: find label errors and redundant items (as `find`)."""
    ctx.obj = {"project": project}
    if ctx.invoked_subcommand is not None:
        given = [
            f"--{name}"
            for name in ("steps", "reviewer", "seed")
            if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)} before `{ctx.invoked_subcommand}` would be ignored; "
                f"put it after: `exemplar curate {ctx.invoked_subcommand} ... {given[0]} ...`"
            )
        return
    _find(_root(ctx, None), _steps(steps), reviewer, seed)


@curate_app.command()
@one_line_errors
def find(
    ctx: typer.Context,
    project: OptionalProject = None,
    steps: Annotated[
        str,
        typer.Option(
            help="label_errors (confident learning, annotator disagreement), prune (near "
            "duplicates, items the model knows well), or both, comma-separated."
        ),
    ] = "label_errors,prune",
    reviewer: Annotated[str, typer.Option(help="Recorded as the operations' author.")] = "cli",
    seed: Annotated[int, typer.Option(help="Seed of the out-of-fold models.")] = 0,
) -> None:
    """Find label errors and redundant labeled items; record them as operations to review."""
    _find(_root(ctx, project), _steps(steps), reviewer, seed)


def _find(root: Path, steps: list[str], reviewer: str, seed: int) -> None:
    from exemplar.project.curation import curate

    with _opened(root) as proj:
        found = curate(proj, steps, reviewer=reviewer, seed=seed)
    if not found:
        console.print(f"nothing found ({', '.join(steps)})")
        return
    _operations_table(found, title=f"{len(found)} operation(s) recorded")
    flag = _project_flag(root)
    console.print(
        f"next: `exemplar curate review ID{flag}` to decide each candidate, or "
        f"`exemplar curate apply ID --all-pending{flag}` to accept them all",
        highlight=False,
    )


def _operations_table(ops: Sequence[dict[str, Any]], *, title: str) -> None:
    table = Table(title=title)
    for col in ("id", "kind", "status", "candidates", "by", "created", "summary"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for op in ops:
        table.add_row(
            str(op["id"]),
            op["kind"],
            op["status"],
            _counts(op["candidates"]),
            Text(op["decided_by"] or op["created_by"] or "—"),
            op["created_at"][:19].replace("T", " "),
            Text(op["summary"] or ""),
        )
    console.print(table)


@curate_app.command("list")
@one_line_errors
def list_(
    ctx: typer.Context,
    project: OptionalProject = None,
    status: Annotated[
        str | None, typer.Option(help="Only this status: proposed, applied, dismissed, undone.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="Only this kind: label_errors, prune, split, merge.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Curation operations, newest first, with their candidates counted by decision."""
    from exemplar.project.curation import operations

    with _opened(_root(ctx, project)) as proj:
        ops = operations(proj, kind=kind, status=status)
    if as_json:
        typer.echo(json.dumps(ops, indent=2, default=str))
        return
    if not ops:
        console.print("no curation operation yet: run `exemplar curate`")
        return
    _operations_table(ops, title="curation operations")


@curate_app.command()
@one_line_errors
def show(
    ctx: typer.Context,
    operation_id: Annotated[int, typer.Argument(metavar="ID", help="The operation.")],
    project: OptionalProject = None,
    limit: Annotated[int, typer.Option(min=0, help="Candidates to show at most.")] = 20,
    as_json: AsJson = False,
) -> None:
    """One operation and its candidates, highest score first."""
    from exemplar.project.curation import operation

    with _opened(_root(ctx, project)) as proj:
        op = operation(proj, operation_id, limit=limit)
    if as_json:
        typer.echo(json.dumps(op, indent=2, default=str))
        return
    _operation_header(op)
    total = sum(op["candidates"].values())
    table = Table(title=f"candidates ({len(op['items'])} of {total} shown)")
    for col in ("id", "item", "content", "reason", "score", "label", "suggested", "decision"):
        table.add_column(col, justify="right" if col in ("id", "item", "score") else "left")
    for c in op["items"]:
        table.add_row(
            str(c["id"]),
            str(c["item_id"]) + (f"/{c['object_id']}" if c["object_id"] is not None else ""),
            Text(_clip_left(c["uri"] or "—", 40)),
            Text(c["reason"]),
            _fmt(c["score"]),
            Text(c["current_label"] or "—"),
            Text(c["suggested_label"] or "—"),
            c["decision"],
        )
    console.print(table)


def _operation_header(op: dict[str, Any]) -> None:
    console.print(
        Text.assemble(
            (f"operation {op['id']}", "bold"),
            f" · {op['kind']} · {op['status']} · {op['summary']}",
        ),
        highlight=False,
    )
    params = op["params"] or {}
    shown = {k: v for k, v in params.items() if k not in ("classes_before", "classes_after")}
    if shown:
        console.print(
            Text("  " + ", ".join(f"{k}={_param(v)}" for k, v in shown.items())),
            highlight=False,
        )


def _param(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


@curate_app.command()
@one_line_errors
def apply(
    ctx: typer.Context,
    operation_id: Annotated[int, typer.Argument(metavar="ID", help="The operation.")],
    project: OptionalProject = None,
    all_pending: Annotated[
        bool,
        typer.Option("--all-pending", help="Accept every undecided candidate too (bulk)."),
    ] = False,
    reviewer: Reviewer = "cli",
) -> None:
    """Apply an operation's accepted candidates (history is kept; `undo` reverts it)."""
    from exemplar.project.curation import apply as apply_operation
    from exemplar.project.curation import operation

    root = _root(ctx, project)
    with _opened(root) as proj:
        op = operation(proj, operation_id, limit=0)
        if op["status"] == "proposed" and not all_pending and not op["candidates"].get("accepted"):
            raise UsageError(
                f"operation {operation_id} has no accepted candidate "
                f"({_counts(op['candidates'])}): decide them with `exemplar curate review "
                f"{operation_id}{_project_flag(root)}`, or accept them all with --all-pending"
            )
        report = apply_operation(proj, operation_id, reviewer=reviewer, accept_pending=all_pending)
    _report("applied", report)


def _report(verb: str, report: dict[str, Any]) -> None:
    console.print(
        f"{verb} operation {report['operation_id']}: {report['written']} label(s) written, "
        f"{len(report['skipped'])} skipped",
        highlight=False,
    )
    for why in report["skipped"][:20]:
        console.print(Text.assemble(("  skipped ", "yellow"), why), highlight=False)
    if len(report["skipped"]) > 20:
        console.print(f"  ... and {len(report['skipped']) - 20} more")


@curate_app.command()
@one_line_errors
def dismiss(
    ctx: typer.Context,
    operation_id: Annotated[int, typer.Argument(metavar="ID", help="The operation.")],
    project: OptionalProject = None,
    reviewer: Reviewer = "cli",
) -> None:
    """Close a proposed operation without changing any label."""
    from exemplar.project.curation import dismiss as dismiss_operation

    with _opened(_root(ctx, project)) as proj:
        dismiss_operation(proj, operation_id, reviewer=reviewer)
    console.print(f"dismissed operation {operation_id}; no label changed")


@curate_app.command()
@one_line_errors
def undo(
    ctx: typer.Context,
    operation_id: Annotated[int, typer.Argument(metavar="ID", help="The operation.")],
    project: OptionalProject = None,
    reviewer: Reviewer = "cli",
) -> None:
    """Undo an applied operation: the labels (and classes) it replaced come back."""
    from exemplar.project.curation import undo as undo_operation

    with _opened(_root(ctx, project)) as proj:
        report = undo_operation(proj, operation_id, reviewer=reviewer)
    _report("undid", report)


@curate_app.command()
@one_line_errors
def review(
    ctx: typer.Context,
    operation_id: Annotated[int, typer.Argument(metavar="ID", help="The operation.")],
    project: OptionalProject = None,
    reviewer: Reviewer = "cli",
) -> None:
    """Decide an operation's undecided candidates, one key each, then apply it.

    y or Enter accepts the candidate (relabel it with the suggested class, or remove it for
    prune), n declines it, a class name (or its number) accepts it with that class, s
    skips, q stops. Each decision is recorded at once; at the end you are asked whether to
    apply the operation.
    """
    from exemplar.project.curation import apply as apply_operation
    from exemplar.project.curation import decide_candidates, operation

    root = _root(ctx, project)
    with _opened(root) as proj:
        op = operation(proj, operation_id)
        if op["status"] != "proposed":
            raise UsageError(f"operation {operation_id} is {op['status']}; nothing to review")
        _operation_header(op)
        prune = op["kind"] == "prune"
        choices = list(proj.classes)
        if op["kind"] == "split":
            choices += [c for c in op["params"].get("into", []) if c not in choices]
        prompt = (
            "y/Enter=remove  n=keep  s=skip  q=quit"
            if prune
            else f"y/Enter=accept  n=decline  {_menu(choices)}  s=skip  q=quit"
        )
        pending = [c for c in op["items"] if c["decision"] == "pending"]
        for k, c in enumerate(pending, start=1):
            _show_candidate(c, k, len(pending), prune)
            answer = _ask(prompt, default="y")
            while answer.lower() not in ("", "y", "n", "s", "q") and (
                prune or _pick_class(answer, choices) is None
            ):
                console.print(Text(f"unknown answer {answer!r}", style="yellow"))
                answer = _ask(prompt, default="y")
            key = answer.lower()
            if key == "q":
                break
            if key == "s":
                continue
            if key == "n":
                decide_candidates(proj, operation_id, {c["id"]: "declined"}, reviewer=reviewer)
                continue
            chosen = None if key in ("", "y") else _pick_class(answer, choices)
            decide_candidates(
                proj,
                operation_id,
                {c["id"]: "accepted"},
                reviewer=reviewer,
                labels={c["id"]: chosen} if chosen is not None else None,
            )
        counts = operation(proj, operation_id, limit=0)["candidates"]
        console.print(f"operation {operation_id}: {_counts(counts)}")
        if not counts.get("accepted"):
            console.print("nothing accepted; the operation stays proposed")
            return
        if _confirm(f"apply operation {operation_id} now ({counts['accepted']} accepted)?"):
            _report("applied", apply_operation(proj, operation_id, reviewer=reviewer))
        else:
            console.print(
                f"not applied; later: `exemplar curate apply {operation_id}{_project_flag(root)}`",
                highlight=False,
            )


def _show_candidate(c: dict[str, Any], k: int, total: int, prune: bool) -> None:
    what = f"item {c['item_id']}" + (
        f" object {c['object_id']}" if c["object_id"] is not None else ""
    )
    console.print(
        Text.assemble((f"\n[{k}/{total}] ", "dim"), (what, "bold"), f" {c['uri'] or ''}"),
        highlight=False,
    )
    detail = c.get("detail") or {}
    why = detail.get("why") or (
        f"duplicate of item {detail['duplicate_of']}" if "duplicate_of" in detail else None
    )
    change = (
        f"remove {c['current_label']!r} from the labeled set"
        if prune
        else f"{c['current_label']!r} → {c['suggested_label']!r}"
    )
    console.print(
        Text(
            f"{c['reason'].replace('_', ' ')} (score {_fmt(c['score'])}): {change}"
            + (f"; {why}" if why else "")
        ),
        highlight=False,
    )


# -- classes ------------------------------------------------------------------------------


@classes_app.command("list")
@one_line_errors
def classes_list(project: OptionalProject = None, as_json: AsJson = False) -> None:
    """The classes, with their verified labels (objects for detection) and open proposals."""
    from exemplar.project.curation import verification

    with _opened(_root(None, project)) as proj:
        info = proj.status()["labels"]
        rows: list[dict[str, Any]] = [
            {
                "class": c,
                "verified": int(info["per_class"].get(c, 0)),
                "proposed": int(verification(proj, label=c, limit=0)["total"]),
            }
            for c in proj.classes
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    unit = "objects" if info.get("per_class_counts") == "objects" else "labels"
    table = Table(title=f"{len(rows)} classes")
    table.add_column("class", no_wrap=True)
    table.add_column(f"verified {unit}", justify="right")
    table.add_column("open proposals", justify="right")
    for r in rows:
        table.add_row(Text(r["class"]), str(r["verified"]), str(r["proposed"]))
    console.print(table)


@classes_app.command()
@one_line_errors
def split(
    label: Annotated[str, typer.Argument(metavar="CLASS", help="The class to split.")],
    project: OptionalProject = None,
    into: Annotated[
        str | None, typer.Option(help="Names of the new classes, comma-separated.")
    ] = None,
    n: Annotated[
        int | None,
        typer.Option("--n", min=2, help="Number of new classes (default: by silhouette)."),
    ] = None,
    apply_now: Annotated[
        bool, typer.Option("--apply", help="Apply the proposed assignment at once (bulk).")
    ] = False,
    reviewer: Reviewer = "cli",
    seed: Annotated[int, typer.Option(help="Seed of the clustering.")] = 0,
) -> None:
    """Propose splitting CLASS by clustering its verified exemplars in embedding space.

    Prints the proposed classes with their sizes and the clustering's silhouette; with
    --apply the assignment is applied at once, otherwise review or apply it with
    `exemplar curate`.
    """
    from exemplar.project.curation import split_class

    names = _names(into, "--into") if into is not None else None
    if names is not None and n is not None:
        raise UsageError("give --into or --n, not both")
    root = _root(None, project)
    with _opened(root) as proj:
        op = split_class(proj, label, names=names, n_classes=n, reviewer=reviewer, seed=seed)
        _class_summary(op)
        _apply_or_hint(proj, op, apply_now, reviewer, root)


@classes_app.command()
@one_line_errors
def merge(
    sources: Annotated[
        str, typer.Argument(metavar="A,B", help="The classes to merge, comma-separated.")
    ],
    into: Annotated[str, typer.Option(help="The class they become (new, or one of them).")],
    project: OptionalProject = None,
    apply_now: Annotated[
        bool, typer.Option("--apply", help="Relabel them at once (bulk).")
    ] = False,
    reviewer: Reviewer = "cli",
) -> None:
    """Propose merging classes into one; the old labels stay in history (undo restores them)."""
    from exemplar.project.curation import merge_classes

    names = _names(sources, "A,B")
    root = _root(None, project)
    with _opened(root) as proj:
        unknown = [c for c in names if c not in proj.classes]
        if unknown:
            raise UsageError(
                f"unknown class {unknown[0]!r}; the classes are {', '.join(proj.classes)}"
            )
        op = merge_classes(proj, names, into.strip(), reviewer=reviewer)
        _class_summary(op)
        _apply_or_hint(proj, op, apply_now, reviewer, root)


def _names(raw: str, what: str) -> list[str]:
    names = [c.strip() for c in raw.split(",") if c.strip()]
    if not names:
        raise UsageError(f"{what}: expected comma-separated class names")
    return names


def _class_summary(op: dict[str, Any]) -> None:
    """The proposed operation: per new class, how many exemplars it gets (and from where)."""
    _operation_header(op)
    moves: Counter[tuple[str, str]] = Counter(
        (c["current_label"] or "—", c["suggested_label"] or "—") for c in op["items"]
    )
    table = Table(title="proposed assignment")
    table.add_column("from", no_wrap=True)
    table.add_column("to", no_wrap=True)
    table.add_column("exemplars", justify="right")
    for (old, new), count in sorted(moves.items()):
        table.add_row(Text(old), Text(new), str(count))
    console.print(table)
    if op["kind"] == "split" and op["params"].get("silhouette") is not None:
        console.print(
            f"silhouette {op['params']['silhouette']:.3f} (1: well separated, 0: overlapping)"
        )


def _apply_or_hint(
    proj: Project, op: dict[str, Any], apply_now: bool, reviewer: str, root: Path
) -> None:
    from exemplar.project.curation import apply as apply_operation

    if apply_now:
        _report("applied", apply_operation(proj, op["id"], reviewer=reviewer, accept_pending=True))
        console.print(f"classes now: {', '.join(proj.classes)}", highlight=False)
        return
    flag = _project_flag(root)
    console.print(
        f"proposed as operation {op['id']}; apply it with "
        f"`exemplar curate apply {op['id']} --all-pending{flag}`, or review it first with "
        f"`exemplar curate review {op['id']}{flag}`",
        highlight=False,
    )
