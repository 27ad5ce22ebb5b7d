"""`python -m sparkc ...`: the same command line as the `sparkc` console script."""

from .cli import main

raise SystemExit(main())
