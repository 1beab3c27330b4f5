"""Tools the benchmarks share: the CLI output snapshot, the HTML screenshot and the peak-memory helper."""
