"""tunefleet controller: tune Linux hosts by experiment."""

__version__ = "0.1.0"
