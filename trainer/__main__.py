"""``python -m trainer``: the same as ``codesearch-train``."""

from trainer.cli import main

raise SystemExit(main())
