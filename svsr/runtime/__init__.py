"""Torch-free runtime: the bidirectional schedule over exported graphs, backends, video I/O."""
