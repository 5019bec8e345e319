"""The analyzer's memory of path windows, and its persistence."""
