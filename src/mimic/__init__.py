"""mimic: facial-expression recognition you can train, fine-tune on your own face and run live."""

__version__ = "0.1.0"
