"""What every stage relies on: errors the CLI reports as one line, run-time plumbing, training checkpoints."""
