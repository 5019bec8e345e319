"""Configuration files, read one way by every part that has one (the agent's configuration,
the SLA policies, the slice rules): the file's text, YAML that refuses a key given twice, and
pydantic's errors as one line per problem, `KEY.PATH: what was expected, got what`, so a
user fixes a file in one go. `ConfigError` carries those lines, each naming the file.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


class ConfigError(ValueError):
    """A configuration that cannot run. `problems` holds one line per problem, each naming
    the file and the key; `str()` is those lines."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def read_config_text(path: Path) -> str:
    """A configuration file's text, or ConfigError saying why it cannot be read."""
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: cannot read: not UTF-8 text"]) from None


# ---------------------------------------------------------------------------------------
# YAML: a key given twice is a mistake, not the last one winning.


MAX_NESTING = 100  # levels of lists and mappings; no configuration needs a tenth of that


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last), and
    nesting deeper than `MAX_NESTING`, which would otherwise exhaust Python's recursion
    limit (a RecursionError traceback instead of a line naming the file)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise yaml.composer.ComposerError(
                    None, None, f"nested too deeply (more than {MAX_NESTING} levels)", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a key must be a plain value such as a name or a number, not a list or mapping",
                key_node.start_mark,
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (first on line {seen[key].line + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError([f"{where}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from None


# ---------------------------------------------------------------------------------------
# pydantic's errors -> "KEY.PATH: what was expected, got what"


def key_path(loc: tuple) -> str:
    """('targets', 3, 'slices', 0) -> 'targets[3].slices[0]'."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe_errors(exc: ValidationError, root: Any) -> list[str]:
    """One "KEY.PATH: message" per error; `root` is the validated type, to list known keys."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = key_path(loc)
        problems.append(f"{where}: {_message(err, root, loc)}" if where else _message(err, root, loc))
    return problems


_TYPE_MESSAGES = {
    "model_type": "expected a mapping (key: value lines)",
    "model_attributes_type": "expected a mapping (key: value lines)",
    "dict_type": "expected a mapping (key: value lines)",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
}


def _message(err: ErrorDetails, root: Any, loc: tuple) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_key(root, loc)
    if kind in ("too_short", "too_long"):
        ctx = err.get("ctx", {})
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        least = "at least" if kind == "too_short" else "at most"
        return f"expected {least} {bound} item{'' if bound == 1 else 's'}, got {ctx.get('actual_length')}"
    if kind in ("value_error", "assertion_error"):
        return err["msg"].split(", ", 1)[1] if ", " in err["msg"] else err["msg"]
    if kind == "missing":
        return "item missing" if loc and isinstance(loc[-1], int) else "required key is missing"
    message = _TYPE_MESSAGES.get(kind) or err["msg"]
    if message.startswith("Input should be "):
        # "Input should be a valid integer, unable to parse ..." -> "expected a valid integer"
        message = "expected " + re.sub(r", (unable|got|invalid)\b.*$", "", message.removeprefix("Input should be "))
    return f"{message}, got {_shown(err.get('input'))}"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key(root: Any, loc: tuple) -> str:
    key = str(loc[-1])
    model = _model_at(root, loc[:-1])
    if model is None:
        return f"unknown key {key!r}"
    keys = list(model.model_fields)
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}{hint} (keys here are: {', '.join(keys)})"


def _model_at(root: Any, loc: tuple) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc`, to list its keys."""
    annotation: Any = root
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            args = get_args(annotation)
            if not args:
                return None
            annotation = args[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and part in annotation.model_fields:
            annotation = annotation.model_fields[part].annotation
        elif get_origin(annotation) is dict:  # a mapping keyed by names: its values' model
            annotation = get_args(annotation)[1]
        else:
            return None
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X; `Annotated[X, ...]` -> X."""
    while True:
        args = get_args(annotation)
        if get_origin(annotation) is Annotated:
            annotation = args[0]
        elif args and type(None) in args and get_origin(annotation) is not list:
            rest = [a for a in args if a is not type(None)]
            annotation = rest[0]
        else:
            return annotation
