"""Registries by decorator (inspect_ai style): `@BACKENDS.register("hf")`, then `BACKENDS.create("hf", ...)`."""

from __future__ import annotations

from turncoat.core.errors import InputError


class Registry(dict):
    """Name -> class. Registering sets the class's `name`; creating an unknown name lists the known ones."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str):
        def add(cls):
            cls.name = name
            self[name] = cls
            return cls

        return add

    def create(self, name: str, *args, **options):
        if name not in self:
            raise InputError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self)}")
        return self[name](*args, **options)
