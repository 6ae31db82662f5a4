"""Every user error lives in `lbctl.errors` and names its exit code: there is no default."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import lbctl
from lbctl import errors
from lbctl.errors import ExitCode, LbctlError, Unreachable


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def test_a_subclass_without_an_exit_code_cannot_be_defined() -> None:
    with pytest.raises(TypeError, match="must set `exit_code`"):

        class Forgotten(LbctlError):
            pass


def test_a_subclass_inherits_its_parents_code() -> None:
    class Down(Unreachable):
        pass

    assert Down("x").exit_code == ExitCode.UNREACHABLE


def test_the_base_class_cannot_be_raised_itself() -> None:
    with pytest.raises(TypeError, match="no exit code"):
        LbctlError("what happened?")


def test_every_user_error_is_defined_in_the_errors_module_with_its_code() -> None:
    for module in pkgutil.walk_packages(lbctl.__path__, "lbctl."):
        if not module.name.startswith(("lbctl.lab", "lbctl.__main__")):  # test fixtures; the entry point
            importlib.import_module(module.name)
    classes = _all_subclasses(LbctlError)
    product = {c for c in classes if c.__module__.startswith("lbctl.")}
    elsewhere = sorted(f"{c.__module__}.{c.__qualname__}" for c in product if c.__module__ != errors.__name__)
    assert elsewhere == []
    for cls in product:
        assert isinstance(cls.exit_code, ExitCode), cls
    assert errors.ApiRefused(500, "no").exit_code == ExitCode.VALIDATION
