"""marimo_store's benchmarks: each module is a script, run from the
repository root as `python -m benchmarks.<name>` (docs/benchmarks.md);
`run.py` runs them all and writes docs/benchmarks.md. Being one package,
they import each other and their shared helpers (`_common.py`) by full
name, never by a bare name a sibling directory or an installed module could
shadow."""
