"""``exemplar.toml``: re-exported from :mod:`exemplar.loop.config`, where the models live.

The loop reads the configuration, and the loop sits below the project facade (DESIGN.md
§3), so the pydantic models live in the loop layer; this module keeps the old import path.
"""

from exemplar.loop.config import (
    CONFIG_NAME,
    AllOfConfig,
    AnyOfConfig,
    CriterionConfig,
    DataSection,
    KPIReachedConfig,
    KPISection,
    LabelBudgetConfig,
    ModelCandidate,
    ModelSection,
    OracleSection,
    ProjectConfig,
    ProjectSection,
    SelectionSection,
    StabilizingConfig,
    StoppingSection,
    UncertaintyThresholdConfig,
    ValidationPlateauConfig,
    load_config,
    save_config,
    validate_config,
)

__all__ = [
    "CONFIG_NAME",
    "AllOfConfig",
    "AnyOfConfig",
    "CriterionConfig",
    "DataSection",
    "KPIReachedConfig",
    "KPISection",
    "LabelBudgetConfig",
    "ModelCandidate",
    "ModelSection",
    "OracleSection",
    "ProjectConfig",
    "ProjectSection",
    "SelectionSection",
    "StabilizingConfig",
    "StoppingSection",
    "UncertaintyThresholdConfig",
    "ValidationPlateauConfig",
    "load_config",
    "save_config",
    "validate_config",
]
