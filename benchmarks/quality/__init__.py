"""Quality benchmarks: the comparison runners that fit, tokenize, train and evaluate on real data."""
