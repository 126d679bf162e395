"""The project store: database (SQLite or PostgreSQL) and memory-mapped arrays."""

from exemplar.store.annotations import (
    OBJECTS_LABEL,
    AnnotationError,
    AnnotationIn,
    ObjectsSubmission,
    SubmittedObject,
    add_annotations,
    current_annotations,
    object_history,
    objects_labeled,
    revise,
    submit_objects,
)
from exemplar.store.db import Database, open_database, sqlite_url
from exemplar.store.schema import Annotation, AnnotationStatus

__all__ = [
    "OBJECTS_LABEL",
    "Annotation",
    "AnnotationError",
    "AnnotationIn",
    "AnnotationStatus",
    "Database",
    "ObjectsSubmission",
    "SubmittedObject",
    "add_annotations",
    "current_annotations",
    "object_history",
    "objects_labeled",
    "open_database",
    "revise",
    "sqlite_url",
    "submit_objects",
]
