"""One registry type for methods and heads; option limits declared in field metadata and checked once."""

from __future__ import annotations

import dataclasses

import pytest

from vptune.errors import HeadError, MethodError, VptuneError
from vptune.heads import HEADS
from vptune.methods import METHODS, get_method
from vptune.option_fields import fill_options, option_help
from vptune.registry import Registry


class _Thing:
    name = "thing"


def test_a_registry_suggests_close_names_and_lists_every_name():
    things = Registry("widget", MethodError)
    things.register(_Thing)
    assert isinstance(things.get("thing"), _Thing) and "thing" in things and things.names() == ["thing"]
    with pytest.raises(MethodError, match=r"unknown widget 'thin'; did you mean thing\? \(available: thing\)"):
        things.get("thin")
    with pytest.raises(VptuneError, match="registered twice"):
        things.register(_Thing)


def test_methods_and_heads_share_the_registry_and_its_message():
    with pytest.raises(MethodError, match=r"unknown method 'vpt-dep'; did you mean vpt-deep"):
        get_method("vpt-dep")
    with pytest.raises(HeadError, match=r"unknown head 'setr-pupp'; did you mean setr-pup"):
        HEADS.get("setr-pupp")


def _outside(field: dataclasses.Field):
    """A value just outside the limits the field declares (None when it declares none)."""
    meta = field.metadata
    if "choices" in meta:
        return "nowhere"
    if "min" in meta:
        return meta["min"] - 1
    if "below" in meta:
        return meta["below"]
    return None


def _owners():
    for method in METHODS:
        yield method.Options, method.name, MethodError
    for head in HEADS:
        yield head.Options, head.name, HeadError


@pytest.mark.parametrize("options_cls,name,error", list(_owners()), ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_declared_limit_is_enforced(options_cls, name, error):
    for field in dataclasses.fields(options_cls):
        bad = _outside(field)
        if bad is None:
            continue
        with pytest.raises(error, match=field.name):
            fill_options(options_cls, {field.name: bad}, "method", name, error)
        assert option_help(field)


def test_limits_read_every_item_of_a_list_and_help_says_them():
    head = HEADS.get("setr-pup")
    with pytest.raises(HeadError, match=r"setr-pup needs aux_blocks >= 1, got \[2, 0\]"):
        fill_options(head.Options, {"aux_blocks": [2, 0]}, "head", head.name, HeadError)
    lora, _ = get_method("lora")
    dropout = next(f for f in dataclasses.fields(lora.Options) if f.name == "dropout")
    with pytest.raises(MethodError, match=r"lora needs dropout in \[0.0, 1.0\), got 1.0"):
        fill_options(lora.Options, {"dropout": 1.0}, "method", "lora", MethodError)
    assert option_help(dropout).endswith("in [0.0, 1.0)")
