"""Large media read as many items: whole-slide images (regions, Deep Zoom tiles) and videos.

An adapter package beside :mod:`exemplar.store`, :mod:`exemplar.data` and
:mod:`exemplar.sources`: it reads files with openslide, Pillow, PyAV and OpenCV and knows
nothing of projects, the database or the server.
"""
