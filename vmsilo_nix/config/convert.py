"""The one cattrs converter: JSON data (camelCase option names) <-> the model's attrs classes.

Strict on purpose: the module system would refuse ``"no"`` for a boolean or ``true`` for an
integer, and so do we. Structuring errors are collected (cattrs detailed validation) and turned
into ``Problem``s that name the option path the user wrote.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from vmsilo_nix.config import model
from vmsilo_nix.config.paths import Segment, format_path, vm_names_of
from vmsilo_nix.config.schema import (
    ROOT,
    NixType,
    field_nix_type,
    fields_of,
    is_option_class,
    list_item,
    literal_args,
    mapping_value,
    nix_only_of,
    nix_type_of,
    option_names,
    rename_map,
    union_args,
)
from vmsilo_nix.errors import ConfigError, Problem

# apply.nix turns Nix values JSON has no word for into markers: a function (so that the error can
# say what the user wrote instead of failing inside `builtins.toJSON`), a path and a derivation
# (so that, as in the module system, only options of type path or package accept them).
MARKER = "_vmsiloNixValue"
NIX_FUNCTION_MARKER = {MARKER: "function"}
STORE_DIR = "/nix/store"


def marker(value: object) -> str | None:
    """The kind of an apply.nix marker ("function", "path", "derivation"), else None."""
    if type(value) is dict and isinstance(value.get(MARKER), str):
        return str(value[MARKER])
    return None


def _is_store_path(text: str) -> bool:
    """As lib.isStorePath: directly in the store (a package, not a file inside one)."""
    return text.startswith("/") and os.path.dirname(text) == STORE_DIR


def as_nix_type(value: Any, t: NixType) -> Any:
    """Resolve apply.nix's markers as an option of type ``t`` would: a path or derivation
    becomes its path where the type accepts it, and stays a marker (refused, with its name)
    where it does not. ``types.str`` takes neither; ``types.path`` takes both;
    ``types.package`` takes a derivation or a path to a store path."""
    kind = t.kind
    if kind == "nullOr":
        return None if value is None else as_nix_type(value, t.args[0])
    if kind in ("either", "oneOf"):
        for arg in t.args:
            resolved = as_nix_type(value, arg)
            if resolved is not value:
                return resolved
        return value
    what = marker(value)
    if kind == "listOf" and type(value) is list:
        return [as_nix_type(v, t.args[0]) for v in value]
    if kind == "attrsOf" and type(value) is dict and what is None:
        return {k: as_nix_type(v, t.args[0]) for k, v in value.items()}
    if kind == "path" and what in ("path", "derivation"):
        return value["path" if what == "path" else "outPath"]
    if kind == "package":
        if what == "derivation":
            return value["outPath"]
        if what == "path" and _is_store_path(value["path"]):
            return value["path"]
        if type(value) is str and not value.startswith("/"):
            # "firefox" names no package: the module system refuses it too. (An absolute
            # string is taken as the store path it stands for outside Nix, as in JSON input.)
            return {MARKER: "name", "text": value}
    return value


def _takes_markers(t: NixType) -> bool:
    return t.kind in ("path", "package") or any(_takes_markers(a) for a in t.args)


def describe(value: object) -> str:
    """A JSON value as a user would call it, for 'expected X, got Y' messages."""
    what = marker(value)
    if what == "function":
        return "a Nix function"
    if what == "path" and isinstance(value, dict):
        return f"the Nix path {value.get('path')}"
    if what == "derivation":
        return "a package"
    if what == "name" and isinstance(value, dict):
        return f"{json.dumps(value.get('text'))}, which is no package (a package or a store path)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "the boolean " + ("true" if value else "false")
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the float {value}"
    if isinstance(value, str):
        shown = json.dumps(value)
        return "the string " + (shown if len(shown) <= 60 else shown[:57] + '..."')
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an attribute set"
    return type(value).__name__


class Mismatch(ValueError):
    """A value of the wrong type or outside its enum; the message is complete."""


class UnknownOption(ValueError):
    def __init__(self, key: str, known: frozenset[str]) -> None:
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        super().__init__(f"unknown option{hint}")
        self.key = key


def _type_words(tp: object) -> str:
    return nix_type_of(tp).describe()


def _strict(tp: type, words: str) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _: Any) -> Any:
        if type(value) is not tp:
            raise Mismatch(f"expected {words}, got {describe(value)}")
        if isinstance(value, str):
            _check_text(value)
        return value

    return hook


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# Everything _check_text refuses, in one search: the common case (clean text) costs one pass.
_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _check_text(text: str, what: str = "the string") -> None:
    """JSON can escape what no Nix string, file name or argv can hold: NUL, lone surrogates.
    No option's value is text over several lines, and every string may end up in a unit file,
    a script, a networkd file or another program's command line, so control characters
    (C0, DEL, C1: a newline starts a new unit directive) are refused everywhere."""
    if _REFUSED.search(text) is None:
        return
    if "\0" in text:
        raise Mismatch(f"{what} contains a NUL character, which no command line can carry")
    control = _CONTROL.search(text)
    if control is not None:
        raise Mismatch(
            f"{what} contains the control character U+{ord(control[0]):04X}; no option takes one"
        )
    raise Mismatch(f"{what} is not valid Unicode text (it holds a lone surrogate)")


def _literal_hook(tp: Any) -> Callable[[Any, Any], Any]:
    choices = literal_args(tp) or ()
    words = ", ".join(json.dumps(c) for c in choices)

    def hook(value: Any, _: Any) -> Any:
        if type(value) is str and value in choices:
            return value
        close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
        hint = f"; did you mean {json.dumps(close[0])}?" if close else ""
        raise Mismatch(f"expected one of {words}, got {describe(value)}{hint}")

    return hook


def _container_hook_factory(conv: cattrs.Converter) -> Callable[[Any], Any]:
    """Lists (tuples in the model) and attribute sets (mappings): every bad item is reported,
    each located by its index or attribute name."""

    def factory(tp: Any) -> Callable[[Any, Any], Any]:
        is_list = list_item(tp) is not None
        item_tp = cast(Any, list_item(tp) if is_list else mapping_value(tp))
        words = _type_words(tp)

        item_hook: list[Callable[[Any, Any], Any]] = []  # looked up once, at first use

        def hook(value: Any, _: Any) -> Any:
            items: Iterable[tuple[Any, Any]]
            if is_list and type(value) is list:
                items = enumerate(value)
            elif not is_list and type(value) is dict:
                items = value.items()
            else:
                raise Mismatch(f"expected {words}, got {describe(value)}")
            if not item_hook:
                item_hook.append(conv.get_structure_hook(item_tp))
            structure_item = item_hook[0]
            out: dict[Any, Any] = {}
            errors = []
            for key, v in items:
                try:
                    if isinstance(key, str):
                        _check_text(key, "the attribute name")
                    out[key] = structure_item(v, item_tp)
                except Exception as e:
                    note = IterableValidationNote(f"item {key}", key, item_tp)
                    e.__notes__ = [*getattr(e, "__notes__", []), note]
                    errors.append(e)
            if errors:
                raise IterableValidationError(f"invalid {words}", errors, tp)
            return tuple(out.values()) if is_list else out

        return hook

    return factory


def _json_kind(tp: Any) -> type:
    """The JSON kind (Python type of a parsed JSON value) that union member ``tp`` takes; its
    content is checked by the member's own hook."""
    if tp is type(None) or tp in (bool, int, str):
        return cast(type, tp)
    if literal_args(tp) is not None:
        return str
    if list_item(tp) is not None:
        return list
    return dict  # mappings and option classes


def _union_hook_factory(conv: cattrs.Converter) -> Callable[[Any], Any]:
    def factory(tp: Any) -> Callable[[Any, Any], Any]:
        members = [(_json_kind(m), m) for m in union_args(tp) or ()]
        words = _type_words(tp)
        hooks: dict[Any, Callable[[Any, Any], Any]] = {}  # each member's, at its first use

        def hook(value: Any, _: Any) -> Any:
            kind = type(value)
            for accepted, member in members:
                if kind is accepted:
                    if value is None:
                        return None
                    if member not in hooks:
                        hooks[member] = conv.get_structure_hook(member)
                    return hooks[member](value, member)
            raise Mismatch(f"expected {words}, got {describe(value)}")

        return hook

    return factory


def _class_hook_factory(conv: cattrs.Converter) -> Callable[[Any], Any]:
    def factory(cls: Any) -> Callable[[Any, Any], Any]:
        renames: dict[str, Any] = {a: override(rename=n) for a, n in rename_map(cls).items()}
        inner = make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=False, **renames)
        known = option_names(cls)
        # Only options whose type takes a path or a package resolve markers; every other one
        # refuses a marker as it refuses any attribute set.
        types = {f.name: t for f in fields_of(cls) if _takes_markers(t := field_nix_type(f))}

        def hook(value: Any, _: Any) -> Any:
            # A marker is an attribute set only on the wire: say what the user wrote.
            if type(value) is not dict or marker(value) is not None:
                raise Mismatch(f"expected an attribute set, got {describe(value)}")
            errors: list[Exception] = []
            keys = value.keys()
            if not keys <= known:
                for key in [k for k in value if k not in known]:  # in the order written
                    err = UnknownOption(key, known)
                    err.__notes__ = [AttributeValidationNote(key, key, None)]
                    errors.append(err)
            # The generated function reads only the model's fields (options only Nix reads
            # are left alone), so the input is passed as it is unless a marker needs resolving.
            data = value
            marked = keys & types.keys()
            if marked:
                data = dict(value)
                for k in marked:
                    data[k] = as_nix_type(value[k], types[k])
            try:
                result = inner(data, cls)
            except ClassValidationError as e:
                errors.extend(e.exceptions)
            if errors:
                raise ClassValidationError(f"invalid {cls.__name__}", errors, cls)
            return result

        return hook

    return factory


def _unstructure_factory(conv: cattrs.Converter) -> Callable[[Any], Any]:
    def factory(cls: Any) -> Callable[[Any], Any]:
        renames: dict[str, Any] = {a: override(rename=n) for a, n in rename_map(cls).items()}
        return make_dict_unstructure_fn(cls, conv, **renames)

    return factory


def make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    conv.register_structure_hook(bool, _strict(bool, "boolean"))
    conv.register_structure_hook(int, _strict(int, "signed integer"))
    conv.register_structure_hook(str, _strict(str, "string"))
    conv.register_structure_hook_factory(lambda t: literal_args(t) is not None, _literal_hook)
    conv.register_structure_hook_factory(
        lambda t: list_item(t) is not None or mapping_value(t) is not None,
        _container_hook_factory(conv),
    )
    conv.register_structure_hook_factory(
        lambda t: union_args(t) is not None, _union_hook_factory(conv)
    )
    conv.register_structure_hook_factory(is_option_class, _class_hook_factory(conv))
    conv.register_unstructure_hook_factory(is_option_class, _unstructure_factory(conv))
    conv.register_unstructure_hook(tuple, list)
    return conv


CONVERTER = make_converter()


def _problems(exc: BaseException, path: list[Segment]) -> list[tuple[list[Segment], str]]:
    if isinstance(exc, ClassValidationError):
        out: list[tuple[list[Segment], str]] = []
        names = rename_map(exc.cl) if is_option_class(exc.cl) else {}
        for sub in exc.exceptions:
            note = next(
                (
                    n
                    for n in getattr(sub, "__notes__", [])
                    if isinstance(n, AttributeValidationNote)
                ),
                None,
            )
            if note is None:
                out += _problems(sub, path)
                continue
            name = note.name if isinstance(sub, UnknownOption) else names.get(note.name, note.name)
            out += _problems(sub, [*path, name])
        return out
    if isinstance(exc, IterableValidationError):
        out = []
        for sub in exc.exceptions:
            inote = next(
                (n for n in getattr(sub, "__notes__", []) if isinstance(n, IterableValidationNote)),
                None,
            )
            seg: list[Segment] = [] if inote is None else [inote.index]
            out += _problems(sub, [*path, *seg])
        return out
    if isinstance(exc, KeyError):
        return [(path, "is required but not set")]
    if isinstance(exc, Mismatch | UnknownOption):
        return [(path, str(exc))]
    # Anything else is a bug in a hook, but the user still gets a located message, not a trace.
    return [(path, f"invalid value ({type(exc).__name__}: {exc})")]


#: Deeper than any option (the deepest, a route's `via`, is 7 levels below programs.vmsilo):
#: anything nested further is refused before it is walked, whatever its depth.
MAX_DEPTH = 32


def too_deep(raw: object) -> tuple[Segment, ...] | None:
    """The path of a value nested deeper than ``MAX_DEPTH``, found without recursion; the
    options only Nix reads (``guestConfig``, ``_internal``, ``package``) are not looked into."""
    skip_root = {n.name for n in nix_only_of(model.Config)}
    skip_vm = {n.name for n in nix_only_of(model.Vm)}
    stack: list[tuple[object, tuple[Segment, ...]]] = [(raw, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            return path
        if isinstance(value, dict):
            skip = skip_root if not path else skip_vm if _is_vm_path(path) else set()
            stack += [(v, (*path, k)) for k, v in value.items() if k not in skip]
        elif isinstance(value, list):
            stack += [(v, (*path, i)) for i, v in enumerate(value)]
    return None


def _is_vm_path(path: tuple[Segment, ...]) -> bool:
    return len(path) == 2 and path[0] == "nixosVms" and isinstance(path[1], int)


def _shown(path: tuple[Segment, ...]) -> tuple[Segment, ...]:
    """Where a too-deep value starts, for the message: its option, not a thousand indices."""
    for n, seg in enumerate(path):
        if isinstance(seg, int) and not (n == 1 and path[0] == "nixosVms"):
            return path[:n]
    return path[:8]


def structure(raw: object) -> model.Config:
    """Turn JSON data into the model, or raise ConfigError listing every problem."""
    try:
        return CONVERTER.structure(raw, model.Config)
    except (ClassValidationError, IterableValidationError, Mismatch) as exc:
        raise ConfigError(located(exc, vm_names_of(raw))) from None
    except RecursionError:
        # Only input far deeper than any option gets here; finding where costs a walk of the
        # whole input, so it is done only then.
        raise too_deep_error(raw) from None


def too_deep_error(raw: object) -> ConfigError:
    shown = _shown(too_deep(raw) or ())
    message = f"is nested more than {MAX_DEPTH} levels deep; no option holds such a value"
    return ConfigError([Problem(format_path(shown, vm_names_of(raw)), message, shown)])


def located(
    exc: BaseException, vm_names: Sequence[str | None] = (), root: str = ROOT
) -> list[Problem]:
    """The problems inside a structuring error, each with its path below ``root``."""
    return [Problem(format_path(p, vm_names, root), m, tuple(p)) for p, m in _problems(exc, [])]


def unstructure(config: model.Config) -> dict[str, Any]:
    """The normalised config as JSON data, every default filled in, option names as in Nix."""
    data: dict[str, Any] = CONVERTER.unstructure(config)
    return data
