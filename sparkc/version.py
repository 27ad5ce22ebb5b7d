"""The sparkc version, in a leaf module: the package's `__init__`, the API's cache key, the CLI's
`--version` and the header of generated files read it from here, so that none of them imports the
`sparkc` package for it (which imports the API lazily: a circle)."""

__version__ = "0.1.0"
