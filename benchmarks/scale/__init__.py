"""Memory and scale benchmarks: peak resident memory and time of a stage on large synthetic inputs."""
