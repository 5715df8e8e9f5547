"""entra-guard's benchmark suite: ``python -m benchmarks`` (see benchmarks/README.md).

Every figure is reported next to a baseline measured in the same run; nothing here fails on
time. The suite uses only the public API, so it keeps measuring as the internals change.
"""
