"""Octopus: distributed task orchestration in one file."""

__version__ = "0.1.0"
