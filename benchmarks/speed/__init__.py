"""Speed benchmarks: wall time, samples/s and items/s of one stage against its target or a yardstick."""
