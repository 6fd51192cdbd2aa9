"""``python -m acp_async``: the same as the ``acp-async`` command."""

from .cli import main

raise SystemExit(main())
