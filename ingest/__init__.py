"""Frames in: camera sources read off the event loop and sampled at the detect fps."""

from ingest.sources import FileSource, Frame, SourceError, open_source

__all__ = ["FileSource", "Frame", "SourceError", "open_source"]
