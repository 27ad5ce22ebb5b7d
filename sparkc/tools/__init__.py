"""Tools that drive the compiler from outside: nothing in the core pipeline imports them.

- `demo`: the project's main job (`python -m sparkc.demo`, kept at that name by the entry point
  `sparkc/demo.py`): compile an example, import the package, train it; `demo_data` makes its
  synthetic batches from a model's declared inputs;
- `bench`: `sparkc bench`, the timing harness for whole models and single ops (`bench_profile`:
  its `--profile` rows);
- `benchutil`: the timing and memory helpers of the benchmark scripts in bench/;
- `docs_gen`: `sparkc ops` and docs/ops.md (`python -m sparkc.tools.docs_gen > docs/ops.md`).

The fuzz campaign (`sparkc/fuzz/`) and the graph drawings (`sparkc/viz/`) are tools too, each
its own package beside this one. tests/test_imports.py checks that no core module imports a tool
(the CLI, `sparkc/cli.py`, is the front door and may).
"""
