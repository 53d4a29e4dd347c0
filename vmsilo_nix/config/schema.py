"""How the Python model declares NixOS options, and a walker over the declared tree.

The attrs classes in ``model`` are the single source of truth for the option schema. Each field
carries an ``OptionMeta`` (its option name, description, example, Nix type when the Python type
alone cannot say it); options that only exist on the Nix side (packages, NixOS modules) are declared
as ``NixOnly`` entries on the class. Renderers (``options_render``) and the converter
(``convert``) read the tree through ``walk``/``options_of`` and nothing else.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

import attrs

META_KEY = "vmsilo_option"
ROOT = "programs.vmsilo"  # where the option tree lives in a NixOS configuration


class _Unset:
    """Marks an absent example or default (None is a real default)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@attrs.frozen
class Literal_:
    """A Nix expression written verbatim (``lib.literalExpression`` in examples, defaults)."""

    text: str


@attrs.frozen
class OptionMeta:
    doc: str
    name: str | None = None  # the option name when it is not the camelCase of the field
    nix_type: NixType | None = None  # overrides the Nix type derived from the annotation
    example: object = UNSET
    group: bool = False  # a plain set of options (no mkOption, no default), like `sound`
    enable: str | None = None  # rendered with lib.mkEnableOption and this text
    read_only: bool = False
    internal: bool = False


@attrs.frozen
class NixOnly:
    """An option declared for the module system only; its value never reaches Python."""

    name: str
    doc: str
    nix_type: NixType | None = None
    default: object = UNSET
    internal: bool = False
    read_only: bool = False
    example: object = UNSET
    children: tuple[NixOnly, ...] = ()  # non-empty: a group of options


def option(
    default: object = attrs.NOTHING,
    *,
    doc: str,
    factory: Any = None,
    name: str | None = None,
    nix_type: NixType | None = None,
    example: object = UNSET,
    group: bool = False,
    enable: str | None = None,
) -> Any:
    """An attrs field that is also a NixOS option."""
    meta = OptionMeta(
        doc=doc, name=name, nix_type=nix_type, example=example, group=group, enable=enable
    )
    if factory is not None:
        return attrs.field(factory=factory, metadata={META_KEY: meta})
    return attrs.field(default=default, metadata={META_KEY: meta})


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@attrs.frozen
class Field:
    """One Python field seen as an option."""

    attr: str  # Python attribute name
    name: str  # option name as written in Nix
    type: Any  # resolved annotation
    meta: OptionMeta
    default: object  # UNSET when required

    @property
    def required(self) -> bool:
        return self.default is UNSET


@functools.cache
def fields_of(cls: type) -> tuple[Field, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for a in attrs.fields(cls):
        meta = a.metadata.get(META_KEY)
        if meta is None:
            raise TypeError(f"{cls.__name__}.{a.name} is not declared with option()")
        default: object = UNSET if a.default is attrs.NOTHING else a.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()  # type: ignore[attr-defined]
        out.append(Field(a.name, meta.name or camel(a.name), hints[a.name], meta, default))
    return tuple(out)


def nix_only_of(cls: type) -> tuple[NixOnly, ...]:
    return tuple(getattr(cls, "__nix_only__", ()))


@functools.cache
def option_names(cls: type) -> frozenset[str]:
    """Every option name accepted as a key of ``cls``, Nix-only ones included."""
    return frozenset(f.name for f in fields_of(cls)) | {n.name for n in nix_only_of(cls)}


@functools.cache
def rename_map(cls: type) -> Mapping[str, str]:
    """Python attribute name -> option name."""
    return {f.attr: f.name for f in fields_of(cls)}


def is_option_class(tp: object) -> bool:
    return isinstance(tp, type) and attrs.has(tp)


def union_args(tp: object) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return None


def literal_args(tp: object) -> tuple[str, ...] | None:
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    return None


def list_item(tp: object) -> Any | None:
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def mapping_value(tp: object) -> Any | None:
    if typing.get_origin(tp) in (Mapping, dict, typing.Mapping):
        return typing.get_args(tp)[1]
    return None


@attrs.frozen
class NixType:
    """A NixOS option type (a small subset of ``lib.types``), derived from a Python annotation."""

    kind: str  # a lib.types name: bool, int, str, path, package, enum, nullOr, submodule, ...
    args: tuple[NixType, ...] = ()
    choices: tuple[str, ...] = ()  # for enum
    cls: type | None = None  # for submodule

    def describe(self) -> str:
        """The type as the NixOS module system describes it (``type.description``)."""
        simple = {
            "bool": "boolean",
            "int": "signed integer",
            "str": "string",
            "path": "absolute path",
            "package": "package",
            "deferredModule": "module",
            "submodule": "submodule",
        }
        if self.kind in simple:
            return simple[self.kind]
        if self.kind == "enum":
            shown = [f'"{c}"' for c in self.choices]
            if len(shown) == 1:
                return f"value {shown[0]} (singular enum)"
            return "one of " + ", ".join(shown)
        if self.kind == "listOf":
            return "list of " + self.args[0].phrase("noun", "composite")
        if self.kind == "attrsOf":
            return "attribute set of " + self.args[0].phrase("noun", "composite")
        if self.kind == "nullOr":
            return "null or " + self.args[0].phrase("noun", "conjunction")
        # either/oneOf: oneOf [a b c] is either (either a b) c in nixpkgs
        first, *rest = self.args
        text = first.phrase("noun", "conjunction")
        for t in rest:
            text += " or " + t.phrase("noun", "conjunction", "composite")
        return text

    @property
    def description_class(self) -> str | None:
        """nixpkgs' ``descriptionClass``, which decides where descriptions get parentheses."""
        if self.kind in {"bool", "int", "str", "package", "path", "deferredModule"}:
            return "noun"
        if self.kind == "enum":
            return "noun" if len(self.choices) < 2 else "nonRestrictiveClause"
        if self.kind in {"listOf", "attrsOf"}:
            return "composite"
        if self.kind in {"nullOr", "either", "oneOf"}:
            return "conjunction"
        return None

    def phrase(self, *bare: str) -> str:
        text = self.describe()
        return text if self.description_class in bare else f"({text})"


T_BOOL = NixType("bool")
T_INT = NixType("int")
T_STR = NixType("str")
T_PATH = NixType("path")
T_PACKAGE = NixType("package")
T_MODULE = NixType("deferredModule")


def null_or(t: NixType) -> NixType:
    return NixType("nullOr", (t,))


def list_of(t: NixType) -> NixType:
    return NixType("listOf", (t,))


def attrs_of(t: NixType) -> NixType:
    return NixType("attrsOf", (t,))


def either(*ts: NixType) -> NixType:
    return NixType("either" if len(ts) == 2 else "oneOf", tuple(ts))


_PRIMITIVES: dict[object, NixType] = {bool: T_BOOL, int: T_INT, str: T_STR}


def nix_type_of(tp: object) -> NixType:
    """Map a model annotation to its NixOS option type."""
    if tp in _PRIMITIVES:
        return _PRIMITIVES[tp]
    if is_option_class(tp):
        return NixType("submodule", cls=tp)  # type: ignore[arg-type]
    if (choices := literal_args(tp)) is not None:
        return NixType("enum", choices=choices)
    if (item := list_item(tp)) is not None:
        return list_of(nix_type_of(item))
    if (value := mapping_value(tp)) is not None:
        return attrs_of(nix_type_of(value))
    if (members := union_args(tp)) is not None:
        rest = [m for m in members if m is not type(None)]
        inner = nix_type_of(rest[0]) if len(rest) == 1 else either(*map(nix_type_of, rest))
        return null_or(inner) if len(rest) < len(members) else inner
    raise TypeError(f"no NixOS type for {tp!r}")


def field_nix_type(f: Field) -> NixType:
    return f.meta.nix_type if isinstance(f.meta.nix_type, NixType) else nix_type_of(f.type)
