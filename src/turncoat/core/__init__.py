"""Core: errors, paths, file I/O, decorator registries, progress and provenance. Imports nothing from turncoat."""
