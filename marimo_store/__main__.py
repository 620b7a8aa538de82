"""`python -m marimo_store`: the `marimo-store` command."""

import sys

from marimo_store.cli import main

sys.exit(main())
