"""The ``acp-async`` command line: ``runs list|poll|watch``, ``fake-server`` and ``demo``.

It lives apart from the library: ``import acp_async`` never imports it, and only the
human output needs the optional ``rich`` (the ``cli`` extra: ``pip install '.[cli]'`` from a
clone of the repository).
"""

from ._app import main

__all__ = ("main",)
