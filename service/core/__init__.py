"""The gateway's engine, independent of HTTP: tokenization, encoding through a backend, MaxSim scoring."""
