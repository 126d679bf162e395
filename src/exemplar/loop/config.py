"""``exemplar.toml``: the project's configuration, validated by pydantic.

Every section rejects unknown keys, so a typo is reported with its key and section
instead of being silently ignored (DESIGN.md §8). The models live in the loop layer, which
reads them; ``exemplar.project.config`` re-exports them for the facade and older imports.

``[stopping]`` is a discriminated union on ``name`` (one model per criterion of
:mod:`exemplar.stopping`), written in TOML as::

    [[stopping.criteria]]
    name = "label_budget"
    budget = 200
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from exemplar.errors import ConfigError
from exemplar.stopping import STOPPING_CRITERIA, AnyOf, StoppingCriterion, make_criterion

__all__ = [
    "CONFIG_NAME",
    "AllOfConfig",
    "AnyOfConfig",
    "CriterionConfig",
    "CurationSection",
    "DataSection",
    "KPIReachedConfig",
    "KPISection",
    "LabelBudgetConfig",
    "ModelCandidate",
    "ModelSection",
    "OracleSection",
    "ProjectConfig",
    "ProjectSection",
    "ScoringSection",
    "SelectionSection",
    "StabilizingConfig",
    "StoppingSection",
    "StreamSection",
    "UncertaintyThresholdConfig",
    "ValidationPlateauConfig",
    "load_config",
    "save_config",
    "validate_config",
]

CONFIG_NAME = "exemplar.toml"

#: Model families whose models find objects (detection and segmentation projects).
OBJECT_FAMILIES = frozenset({"detector", "external"})
#: The strategy a detection or segmentation project starts with: on the real nuclei benchmark
#: (bench/detection_efficiency.py) it reached random's final mAP@0.5 with 34% of random's
#: boxes, where box_entropy needed 103% (docs/detection.md).
DEFAULT_OBJECT_STRATEGY = "localization_stability"
#: The default with an external trainer, which predicts no augmented views.
EXTERNAL_OBJECT_STRATEGY = "box_entropy"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProjectSection(_Section):
    """What is being labeled and where its state lives."""

    name: str = Field(min_length=1)
    #: "classification": one class per item. "detection": boxes on images.
    #: "segmentation": outlines (instance masks) on images. See docs/detection.md.
    task: Literal["classification", "detection", "segmentation"] = "classification"
    classes: list[str] = Field(min_length=1)
    database_url: str = ""
    seed: int = 0

    @property
    def objects(self) -> bool:
        """Whether items hold objects (detection or segmentation), not one class."""
        return self.task != "classification"

    @model_validator(mode="after")
    def _enough_classes(self) -> ProjectSection:
        if self.task == "classification" and len(self.classes) < 2:
            raise ValueError(
                "classes: a classification project needs at least two classes "
                "(a detection or segmentation project may have one)"
            )
        return self

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, value: list[str]) -> list[str]:
        cleaned = [c.strip() for c in value]
        if any(not c for c in cleaned):
            raise ValueError("class names must not be empty")
        dupes = sorted({c for c in cleaned if cleaned.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate class names: {', '.join(dupes)}")
        return cleaned


class DataSection(_Section):
    """How imported items become feature rows."""

    image_size: int = Field(default=16, ge=4, le=256)
    text_features: int = Field(default=512, ge=16, le=65536)
    #: "hashing": hashed bag of words (text_features columns); "minilm": MiniLM sentence
    #: embeddings (384 columns, needs the `text` extra), cached per content hash.
    text_encoder: Literal["hashing", "minilm"] = "hashing"
    #: Images with more pixels are not imported (reported per file); larger ones are
    #: decoded at a reduced scale or strip by strip, never whole (see docs/project.md).
    max_image_pixels: int = Field(default=200_000_000, ge=1)
    #: Detection and segmentation: each image is scaled to fit ``image_side`` pixels and
    #: padded to a square (a multiple of 32); the detector reads these pixels.
    image_side: int = Field(default=256, ge=32, le=2048, multiple_of=32)
    #: Detection and segmentation: 1 (grey) or 3 (RGB) channels.
    channels: Literal[1, 3] = 1
    #: Detection and segmentation: images wider or taller than this are cut at import into
    #: tiles of ``tile_size`` pixels (written to the project's ``tiles/``), each one item,
    #: so small objects keep their size in the detector's frame. None: whole images.
    tile_size: int | None = Field(default=None, ge=32)
    #: Pixels neighbouring tiles share (objects cut by a tile border appear whole in one).
    tile_overlap: int = Field(default=0, ge=0)
    #: Whole-slide images: each slide is cut into regions of ``region_size`` pixels at
    #: ``magnification`` (an objective power such as 20; None: the slide's full
    #: resolution), each region one item; neighbours share ``region_overlap`` pixels, and
    #: regions with less than ``min_tissue`` tissue (the rest is background) are left out.
    region_size: int = Field(default=512, ge=32, le=8192)
    magnification: float | None = Field(default=None, gt=0)
    region_overlap: int = Field(default=0, ge=0)
    min_tissue: float = Field(default=0.05, ge=0.0, le=1.0)
    #: Videos: every ``frame_step``-th frame is imported (each one item).
    frame_step: int = Field(default=1, ge=1)
    #: Videos: a batch takes at most one frame from each run of ``segment_frames`` frames
    #: of a video (its best-scored one) before a second; 0 lets frames compete freely.
    segment_frames: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _overlap_below_region(self) -> DataSection:
        if self.region_overlap >= self.region_size:
            raise ValueError(
                f"region_overlap ({self.region_overlap}) must be smaller than region_size "
                f"({self.region_size})"
            )
        return self

    @model_validator(mode="after")
    def _overlap_below_tile(self) -> DataSection:
        if self.tile_size is not None and self.tile_overlap >= self.tile_size:
            raise ValueError(
                f"tile_overlap ({self.tile_overlap}) must be smaller than tile_size "
                f"({self.tile_size})"
            )
        return self


class ModelCandidate(_Section):
    """One model the Model Selector may choose."""

    recipe: str = "logreg"
    params: dict[str, Any] = Field(default_factory=dict)


def _default_candidates() -> list[ModelCandidate]:
    return [ModelCandidate(recipe="logreg", params={"C": c}) for c in (0.1, 1.0, 10.0)]


class ModelSection(_Section):
    """The Model Selector: candidates, criterion, validation protocol, checkpoints."""

    candidates: list[ModelCandidate] = Field(default_factory=_default_candidates, min_length=1)
    #: Classification: accuracy, macro_f1 or log_loss. Detection and segmentation:
    #: map50 (mAP at IoU 0.5) or map (mAP averaged over IoU 0.5:0.95), on the validation split.
    criterion: Literal["accuracy", "macro_f1", "log_loss", "map50", "map"] = "accuracy"
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    min_validation_labels: int = Field(default=50, ge=2)
    cv_folds: int = Field(default=3, ge=2, le=20)
    keep_checkpoints: int = Field(default=3, ge=1)
    device: str = Field(default="cpu", pattern=r"^(cpu|cuda|cuda:\d+|auto)$")
    #: Detection and segmentation: objects the model scores below this are not proposed
    #: on the items a cycle queues (annotators see the rest, to verify or reject).
    proposal_threshold: float = Field(default=0.3, ge=0.0, le=1.0)


class SelectionSection(_Section):
    """The Data Selector."""

    strategy: str = "default"
    params: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(default=10, ge=1)
    initial_size: int = Field(default=20, ge=2)
    chunk_size: int = Field(default=65_536, ge=256)
    control_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    retrain_every: int = Field(default=0, ge=0)
    #: Cost-aware selection (Settles et al. 2008): utility per expected second of labeling,
    #: once ``cost_min_labels`` labels carry a recorded time (before that, plain utility).
    cost_aware: bool = False
    cost_min_labels: int = Field(default=20, ge=2)


class ScoringSection(_Section):
    """Where the pool is scored: in this process chunk by chunk (``local``), or on a Ray
    cluster (``ray``) that writes its outputs as shards (``npy`` or ``parquet``).

    ``ray_address`` empty starts a Ray on this machine (or joins the cluster named by the
    ``RAY_ADDRESS`` environment variable, when set); ``auto`` joins the cluster this machine
    belongs to; ``ray://host:10001`` connects to a remote cluster's client port. ``x_rows``
    says how workers get the feature rows: ``file`` (they read the project's feature file,
    which every node must see at the same path), ``ship`` (through Ray's object store, a
    bounded number of row ranges at a time), ``auto`` (``file`` on a one-node cluster).
    ``num_cpus`` sizes a Ray started here only. See docs/scale.md, "Scoring on Ray".
    """

    engine: Literal["local", "ray"] = "local"
    ray_address: str = ""
    shard_format: Literal["npy", "parquet"] = "npy"
    rows_per_task: int = Field(default=65_536, ge=256)
    num_cpus: int | None = Field(default=None, ge=1)
    x_rows: Literal["auto", "file", "ship"] = "auto"

    @model_validator(mode="after")
    def _cpus_for_a_local_ray(self) -> ScoringSection:
        if self.num_cpus is not None and self.ray_address:
            raise ValueError(
                "[scoring].num_cpus sizes a Ray started on this machine; with ray_address "
                "set, the cluster's own CPUs are used (drop num_cpus)"
            )
        return self


class StreamSection(_Section):
    """Stream mode: items arrive one at a time and each is asked for, or not, at once.

    ``budget`` is the share of arrivals that may be sent to the oracle; ``manager`` is the
    budget manager that decides (``exemplar.stream``); ``retrain_every`` is the number of
    new labels between retrains of the stream's model. ``enabled`` makes the project a
    stream project: it accepts stream items, its label page is a feed, and the background
    learner and ``exemplar refill`` never queue pool items for it (docs/streams.md).
    """

    enabled: bool = False
    manager: Literal[
        "fixed_uncertainty", "variable_uncertainty", "split", "balanced_incremental", "random"
    ] = "variable_uncertainty"
    budget: float = Field(default=0.1, gt=0.0, le=1.0)
    params: dict[str, Any] = Field(default_factory=dict)
    retrain_every: int = Field(default=10, ge=1)
    #: A skipped item in the labeling app's feed comes back after this many other items.
    skip_requeue_after: int = Field(default=20, ge=1)


class OracleSection(_Section):
    """Who labels: ground truth (simulated), people (human), or another tool (file).

    ``overlap`` is how many different annotators label each queued item (human oracle
    only); a disagreement between them sends the item to review (``exemplar.store.overlap``).
    """

    kind: Literal["simulated", "human", "file"] = "human"
    noise_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    cost_per_label: float = Field(default=0.0, ge=0.0)
    path: str = ""
    lease_seconds: int = Field(default=600, ge=1)
    overlap: int = Field(default=1, ge=1, le=16)
    #: With several annotators per item: ``activelab`` lets each batch weigh relabeling an
    #: item already labeled against labeling a new one (Goh & Mueller 2023).
    relabel: Literal["never", "activelab"] = "never"

    @model_validator(mode="after")
    def _file_needs_path(self) -> OracleSection:
        if self.kind == "file" and not self.path:
            raise ValueError("oracle kind 'file' needs a path to the labels file")
        if self.relabel == "activelab" and self.overlap < 2:
            raise ValueError(
                "relabel = 'activelab' needs overlap of at least 2 (the most annotators an "
                "item may get); new items get one, relabels add more"
            )
        if self.overlap > 1 and self.kind != "human":
            raise ValueError(
                f"overlap = {self.overlap} needs oracle kind 'human' (several people per item); "
                f"kind {self.kind!r} labels each item once"
            )
        return self


class KPISection(_Section):
    """The target the Compare step checks on each newly labeled batch."""

    metric: Literal["accuracy", "macro_f1", "map50", "box_f1"] = "accuracy"
    target: float = Field(default=0.9, gt=0.0, le=1.0)


class _Criterion(_Section):
    """One stopping criterion's table; ``name`` picks the model (and the criterion class).

    Numbers are strict: ``budget = "200"`` or ``budget = true`` is an error, not a guess.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)

    def build(self) -> StoppingCriterion:
        """The :mod:`exemplar.stopping` criterion this table configures (fresh state)."""
        return make_criterion(self.model_dump())


class LabelBudgetConfig(_Criterion):
    """Stop once ``budget`` labels are used (:class:`~exemplar.stopping.LabelBudget`)."""

    name: Literal["label_budget"]
    budget: int = Field(ge=1)


class StabilizingConfig(_Criterion):
    """Stop when predictions on a stop set agree between rounds (Bloodgood & Vijay-Shanker,
    2009; :class:`~exemplar.stopping.StabilizingPredictions`)."""

    name: Literal["stabilizing_predictions"]
    threshold: float = Field(default=0.99, gt=-1.0, le=1.0)
    window: int = Field(default=3, ge=1)


class UncertaintyThresholdConfig(_Criterion):
    """Stop when the pool's uncertainty falls below ``threshold`` (Zhu et al., 2008;
    :class:`~exemplar.stopping.UncertaintyThreshold`)."""

    name: Literal["uncertainty_threshold"]
    threshold: float = Field(default=0.05, gt=0.0)
    measure: Literal["entropy", "least_confidence"] = "entropy"
    aggregate: Literal["mean", "max"] = "mean"
    normalize: bool = True


class ValidationPlateauConfig(_Criterion):
    """Stop when a validation metric stops improving for ``patience`` rounds
    (:class:`~exemplar.stopping.ValidationPlateau`)."""

    name: Literal["validation_plateau"]
    metric: str = Field(default="accuracy", min_length=1)
    patience: int = Field(default=3, ge=1)
    min_delta: float = Field(default=0.0, ge=0.0)
    mode: Literal["max", "min"] = "max"


class KPIReachedConfig(_Criterion):
    """Stop when a metric reaches ``target`` (:class:`~exemplar.stopping.KPIReached`)."""

    name: Literal["kpi_reached"]
    target: float
    metric: str = Field(default="accuracy", min_length=1)
    mode: Literal["max", "min"] = "max"


class AnyOfConfig(_Criterion):
    """Stop when any child criterion stops (:class:`~exemplar.stopping.AnyOf`)."""

    name: Literal["any_of"]
    criteria: list[CriterionConfig] = Field(min_length=1)


class AllOfConfig(_Criterion):
    """Stop when every child criterion has stopped (:class:`~exemplar.stopping.AllOf`)."""

    name: Literal["all_of"]
    criteria: list[CriterionConfig] = Field(min_length=1)


#: One ``[[stopping.criteria]]`` table, told apart by its ``name``.
CriterionConfig = Annotated[
    LabelBudgetConfig
    | StabilizingConfig
    | UncertaintyThresholdConfig
    | ValidationPlateauConfig
    | KPIReachedConfig
    | AnyOfConfig
    | AllOfConfig,
    Field(discriminator="name"),
]
AnyOfConfig.model_rebuild()
AllOfConfig.model_rebuild()


def _default_criteria() -> list[CriterionConfig]:
    return [LabelBudgetConfig(name="label_budget", budget=200)]


class StoppingSection(_Section):
    """Stopping criteria (any of them stops the loop); see ``exemplar.stopping``."""

    criteria: list[CriterionConfig] = Field(default_factory=_default_criteria)
    #: What a ``label_budget`` counts: labeled items, or objects (boxes or outlines
    #: confirmed or drawn), where an expert's time goes in detection.
    budget_unit: Literal["items", "objects"] = "items"

    @property
    def label_budget(self) -> int | None:
        """The smallest top-level ``label_budget``, or None when no budget is set."""
        budgets = [c.budget for c in self.criteria if isinstance(c, LabelBudgetConfig)]
        return min(budgets) if budgets else None

    def build(self) -> AnyOf:
        """All criteria as one :class:`~exemplar.stopping.AnyOf` (fresh state)."""
        return AnyOf([c.build() for c in self.criteria])


#: Curation steps that may run automatically each cycle (``[curation] auto``).
CURATION_STEPS = ("propose", "label_errors", "prune")


class CurationSection(_Section):
    """Curation (issue #12): which steps run each cycle, and how unverified proposals count.

    Every automatic step runs in the cycle's recorded ``curate`` state, after scoring and
    before selection, and writes proposals a person confirms; nothing is removed or
    relabeled without a reviewer (docs/curation.md).
    """

    #: Steps run each cycle: ``propose`` (the model labels a sample of the pool),
    #: ``label_errors`` (confident learning on out-of-fold probabilities, plus annotator
    #: disagreement) and ``prune`` (near duplicates and confidently known items).
    auto: list[Literal["propose", "label_errors", "prune"]] = Field(default_factory=list)
    #: How many pool items the propose step labels per cycle (0: every pool item).
    propose_sample: int = Field(default=200, ge=0)
    #: Proposals below this confidence are not written (classification: top probability;
    #: objects: the model's score).
    propose_min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    #: Unverified proposals before training: ``drop`` them, keep them as ``weak`` labels
    #: (weighted by ``weak_weight``), or keep them weakly until they ``expire`` after
    #: ``expire_after`` cycles.
    unverified: Literal["drop", "weak", "expire"] = "drop"
    #: A weak label's weight against a verified one (realized by repeating verified rows
    #: ``round(1 / weak_weight)`` times, so every model recipe honours it).
    weak_weight: float = Field(default=0.5, ge=0.25, le=1.0)
    #: Weak labels must be at least this confident.
    weak_min_confidence: float = Field(default=0.9, ge=0.0, le=1.0)
    #: Cycles after which an unverified proposal is withdrawn (``unverified = "expire"``).
    expire_after: int = Field(default=2, ge=1)
    #: A rejected proposal at least this confident is kept as a hard negative.
    hard_negative_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    #: How many times a classification hard negative counts in training.
    hard_negative_weight: int = Field(default=2, ge=1, le=10)
    #: Label-error suspects sent to review per cycle (the review budget).
    review_budget: int = Field(default=20, ge=1)
    #: Out-of-fold folds for confident learning.
    folds: int = Field(default=5, ge=2, le=20)
    #: Prune step: cosine distance within which labeled items are near duplicates (unset:
    #: the library's default, read from the data's own neighbour distances).
    duplicate_radius: float | None = Field(default=None, gt=0.0, le=2.0)
    #: Prune step: margin above which a correctly classified item is proposed for removal.
    prune_margin: float = Field(default=0.5, ge=0.0, le=1.0)
    #: Prune step: at most this share of the labeled set is proposed for its margin.
    prune_confident_share: float = Field(default=0.1, ge=0.0, le=0.9)


class ProjectConfig(_Section):
    """The whole ``exemplar.toml``."""

    project: ProjectSection
    data: DataSection = Field(default_factory=DataSection)
    model: ModelSection = Field(default_factory=ModelSection)
    selection: SelectionSection = Field(default_factory=SelectionSection)
    oracle: OracleSection = Field(default_factory=OracleSection)
    kpi: KPISection = Field(default_factory=KPISection)
    stopping: StoppingSection = Field(default_factory=StoppingSection)
    curation: CurationSection = Field(default_factory=CurationSection)
    scoring: ScoringSection = Field(default_factory=ScoringSection)
    stream: StreamSection = Field(default_factory=StreamSection)

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, raw: Any) -> Any:
        """Detection and segmentation start from their own defaults (a detector, mAP@0.5,
        an object strategy) wherever the file leaves a key out."""
        if not isinstance(raw, dict):
            return raw
        task = (raw.get("project") or {}).get("task", "classification")
        if task not in ("detection", "segmentation"):
            return raw
        raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
        model = raw.setdefault("model", {})
        if isinstance(model, dict):
            recipe = "centernet-seg" if task == "segmentation" else "centernet"
            model.setdefault("candidates", [{"recipe": recipe, "params": {}}])
            model.setdefault("criterion", "map50")
        kpi = raw.setdefault("kpi", {})
        if isinstance(kpi, dict):
            kpi.setdefault("metric", "map50")
            kpi.setdefault("target", 0.9)
        selection = raw.setdefault("selection", {})
        if isinstance(selection, dict) and selection.get("strategy", "default") == "default":
            external = any(
                isinstance(c, dict) and c.get("recipe") == "external"
                for c in (model.get("candidates") or [] if isinstance(model, dict) else [])
            )
            # An external tool predicts no augmented views: rank by its boxes' class entropy.
            selection["strategy"] = (
                EXTERNAL_OBJECT_STRATEGY if external else DEFAULT_OBJECT_STRATEGY
            )
        return raw

    @model_validator(mode="after")
    def _task_fits(self) -> ProjectConfig:
        """Models, criteria and the budget unit must suit the task."""
        from exemplar.models import MODEL_RECIPES

        objects = self.project.objects
        for cand in self.model.candidates:
            recipe = MODEL_RECIPES.get(cand.recipe)
            if recipe is not None and (recipe.family in OBJECT_FAMILIES) != objects:
                want = (
                    "a detector (centernet, centernet-seg, external)"
                    if objects
                    else ("a classifier")
                )
                raise ValueError(
                    f"[model].candidates: recipe {cand.recipe!r} does not suit a "
                    f"{self.project.task} project; use {want}"
                )
        box_metrics = {"map50", "map"}
        if (self.model.criterion in box_metrics) != objects:
            raise ValueError(
                f"[model].criterion {self.model.criterion!r} does not suit a {self.project.task} "
                "project; use " + ("map50 or map" if objects else "accuracy, macro_f1 or log_loss")
            )
        if (self.kpi.metric in {"map50", "box_f1"}) != objects:
            raise ValueError(
                f"[kpi].metric {self.kpi.metric!r} does not suit a {self.project.task} project; "
                "use " + ("map50 or box_f1" if objects else "accuracy or macro_f1")
            )
        if objects and any(c.recipe == "external" for c in self.model.candidates):
            from exemplar.strategies import get_strategy

            try:
                passes = getattr(get_strategy(self.selection.strategy), "object_passes", ())
            except ConfigError:
                passes = ()  # an unknown strategy is reported by _known_names
            if "views" in passes:
                raise ValueError(
                    f"[selection].strategy {self.selection.strategy!r} reads predictions on "
                    "augmented views, which an external trainer does not give; use "
                    f"{EXTERNAL_OBJECT_STRATEGY!r}, box_margin, box_committee (with samples "
                    "from your predict command) or random"
                )
        if objects and self.oracle.kind == "file":
            raise ValueError(
                '[oracle].kind = "file" reads one class per item; a detection or segmentation '
                'project is labeled by people (kind "human", through the Objects API) or '
                'simulated from imported ground truth (kind "simulated")'
            )
        if objects and self.scoring.engine == "ray":
            raise ValueError(
                '[scoring].engine = "ray" scores feature models; a detection or segmentation '
                'project scores locally (engine = "local")'
            )
        if self.stopping.budget_unit == "objects" and not objects:
            raise ValueError(
                '[stopping].budget_unit = "objects" needs a detection or segmentation project'
            )
        return self

    @model_validator(mode="after")
    def _known_names(self) -> ProjectConfig:
        from exemplar.models import MODEL_RECIPES, make_model
        from exemplar.strategies import get_strategy

        for cand in self.model.candidates:
            recipe = MODEL_RECIPES.get(cand.recipe)
            if recipe is None:
                raise ValueError(
                    f"unknown model recipe {cand.recipe!r} in [model].candidates; "
                    f"choose one of: {', '.join(MODEL_RECIPES)}"
                )
            if recipe.reads_text:
                raise ValueError(
                    f"recipe {cand.recipe!r} reads raw texts; in a project, text items are "
                    'embedded once at import: set [data] text_encoder = "minilm" and use '
                    'recipe "logreg" or "mlp"'
                )
            try:  # unknown hyper-parameters fail here, not in the middle of a cycle
                make_model(cand.recipe, device=self.model.device, **cand.params)
            except ConfigError as exc:
                raise ValueError(f"[model].candidates: {exc}") from None
        try:
            chosen = get_strategy(self.selection.strategy, **self.selection.params)
        except ConfigError as exc:
            raise ValueError(f"[selection].strategy: {exc}") from None
        if self.selection.cost_aware and chosen.name == "albl":
            raise ValueError(
                "[selection].cost_aware = true does not work with strategy 'albl': the "
                "bandit's importance weights assume its arm's batch is the batch labeled; "
                "turn cost_aware off or pick another strategy"
            )
        try:  # what the typed tables cannot say (e.g. a criterion's own checks)
            self.stopping.build()
        except ConfigError as exc:
            raise ValueError(f"[stopping].criteria: {exc}") from None
        return self


def load_config(path: Path) -> ProjectConfig:
    """Read and validate ``exemplar.toml``; errors name the file, key and problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run `exemplar init` first)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return validate_config(raw, where=str(path))


def validate_config(raw: dict[str, Any], where: str = CONFIG_NAME) -> ProjectConfig:
    """Validate a parsed config mapping; errors name ``where``, the key and the problem."""
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from None


def save_config(config: ProjectConfig, path: Path) -> None:
    """Write ``exemplar.toml`` atomically."""
    tmp = path.with_name(path.name + ".tmp")
    # None means "not set" (a default): TOML has no null, so such keys are left out.
    tmp.write_text(
        tomli_w.dumps(config.model_dump(mode="json", exclude_none=True)), encoding="utf-8"
    )
    tmp.replace(path)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = f"[{loc[0]}]" + (f".{'.'.join(loc[1:])}" if len(loc) > 1 else "") if loc else ""
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {where}")
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            ctx = err.get("ctx") or {}
            what = f"unknown stopping criterion {ctx['tag']!r}" if "tag" in ctx else "no name"
            names = ", ".join(sorted(STOPPING_CRITERIA))
            parts.append(f"{where}: {what}; set name to one of: {names}")
        elif err["type"] == "missing":
            parts.append(f"missing required key {where}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)
