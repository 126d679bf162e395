"""Sources: the input formats that become items, one module per format.

* :mod:`~exemplar.sources.base`: records, chunks, problems and the :class:`Source` type;
* :mod:`~exemplar.sources.images`: folders of images (class subfolders) and single images;
* :mod:`~exemplar.sources.csv_table`: CSV tables (feature rows or texts);
* :mod:`~exemplar.sources.parquet_table`: Parquet tables (feature rows or texts);
* :mod:`~exemplar.sources.arrays`: ``.npy`` / ``.npz`` arrays;
* :mod:`~exemplar.sources.features`: featurizers (images, hashed text);
* :mod:`~exemplar.sources.registry`: which format reads a path (add new formats there);
* :mod:`~exemplar.sources.writer`: the batch writer (one transaction per chunk).

The importer (``exemplar.project.importing``) and the simulator's file loader
(``exemplar.data.user``) read files through these modules, so each format is parsed in
one place. Submodules are imported on use, so reading a CSV file does not load the
database layer.
"""

from exemplar.sources.base import Chunk, Log, Problem, Record, Source, SourceOptions

__all__ = ["Chunk", "Log", "Problem", "Record", "Source", "SourceOptions"]
