"""Labels files of a person or another tool: re-exported from :mod:`exemplar.loop.labels_file`.

The file oracle of the loop applies them, so the code lives in the loop layer; this module
keeps the old import path for ``Project.import_labels`` and existing callers.
"""

from exemplar.loop.labels_file import LabelImport, apply_labels_file, read_labels_file

__all__ = ["LabelImport", "apply_labels_file", "read_labels_file"]
