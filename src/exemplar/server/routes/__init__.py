"""The server's routes, one module per area; each module's ``router()`` builds its routes.

They import :mod:`exemplar.server.deps` and :mod:`exemplar.server.schemas`, never the app
factory (:mod:`exemplar.server.app`), which includes them.
"""
