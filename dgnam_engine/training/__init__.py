"""Training utilities for DGN-AM Studio priors."""
