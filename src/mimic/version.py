"""mimic's version, in one place: the package exports it, checkpoints and exported files record it."""

__version__ = "0.1.0"
