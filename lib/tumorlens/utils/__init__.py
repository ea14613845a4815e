"""Helpers every stage uses: progress bars, atomic file writes, what a run records about its environment."""
