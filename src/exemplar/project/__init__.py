"""Projects: a config, a database and arrays, driven by the resumable loop."""

from exemplar.project.config import ProjectConfig, load_config
from exemplar.project.project import Project

__all__ = ["Project", "ProjectConfig", "load_config"]
