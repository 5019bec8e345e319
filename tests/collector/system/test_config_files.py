"""How every configuration file is read (collector.system.config_files): its text or why not, YAML
that refuses a key given twice and says where, and pydantic's errors as one line per problem,
`KEY.PATH: what was expected, got what`, with the known keys where a key is unknown."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from collector.system.config_files import ConfigError, describe_errors, key_path, load_yaml, read_config_text


class Port(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: int = Field(ge=1)


class Listener(BaseModel):
    """A small configuration with each shape describe_errors walks: lists, mappings by name, optionals."""

    model_config = ConfigDict(extra="forbid")
    name: str
    ports: list[Port] = Field(min_length=1, max_length=4)
    options: dict[str, Port] = {}
    peer: Port | None = None
    span: tuple[int, int] = (0, 0)

    @field_validator("name")
    @classmethod
    def _no_space(cls, value: str) -> str:
        if " " in value:
            raise ValueError(f"{value!r} has a space")
        return value


def problems(data: object) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Listener.model_validate(data)
    return describe_errors(caught.value, Listener)


# -- reading ---------------------------------------------------------------------------------


def test_a_missing_config_file_is_one_problem(tmp_path):
    with pytest.raises(ConfigError) as caught:
        read_config_text(tmp_path / "nope.yaml")
    assert caught.value.problems == (f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory",)
    assert isinstance(caught.value, ValueError)


def test_a_file_that_is_not_utf8_text_or_is_a_directory_cannot_be_read(tmp_path):
    (tmp_path / "agent.yaml").write_bytes(b"site: {name: caf\xe9}\n")
    with pytest.raises(ConfigError) as caught:
        read_config_text(tmp_path / "agent.yaml")
    assert caught.value.problems == (f"{tmp_path / 'agent.yaml'}: cannot read: not UTF-8 text",)
    with pytest.raises(ConfigError) as caught:
        read_config_text(tmp_path)
    assert caught.value.problems == (f"{tmp_path}: cannot read: Is a directory",)


def test_a_config_error_is_its_problems_one_per_line():
    error = ConfigError(["a.yaml: x: wrong", "a.yaml: y: missing"])
    assert error.problems == ("a.yaml: x: wrong", "a.yaml: y: missing")
    assert str(error) == "a.yaml: x: wrong\na.yaml: y: missing"


# -- YAML ------------------------------------------------------------------------------------

YAML_CASES = {
    "syntax": (
        "site: {name: a}\ntargets:\n  - name: x\n     address: '::1'\n",
        "agent.yaml:4:13: invalid YAML: mapping values are not allowed here",
    ),
    "unclosed": ("site: {name: a\n", "agent.yaml:2:1: invalid YAML: expected ',' or '}', but got '<stream end>'"),
    "key twice": (
        "site: {name: a}\nprobing: {}\nsite: {name: b}\n",
        "agent.yaml:3:1: invalid YAML: key 'site' appears twice (first on line 1)",
    ),
}


@pytest.mark.parametrize("text, expected", YAML_CASES.values(), ids=YAML_CASES.keys())
def test_yaml_errors_give_line_and_column(text, expected):
    with pytest.raises(ConfigError) as caught:
        load_yaml(text, "agent.yaml")
    assert list(caught.value.problems) == [expected]


def test_a_key_twice_in_a_nested_mapping_is_refused_and_one_key_in_two_mappings_is_not():
    with pytest.raises(ConfigError) as caught:
        load_yaml("a:\n  b: 1\n  b: 2\n", "x.yaml")
    assert caught.value.problems == ("x.yaml:3:3: invalid YAML: key 'b' appears twice (first on line 2)",)
    assert load_yaml("a: {b: 1}\nc: {b: [2, 3]}\n", "x.yaml") == {"a": {"b": 1}, "c": {"b": [2, 3]}}
    assert load_yaml("", "x.yaml") is None


@pytest.mark.parametrize("text", ["? {a: 1}\n: b\n", "x:\n  ? [1, 2]\n  : y\n"])
def test_a_list_or_mapping_as_a_key_is_refused_with_its_place(text):
    with pytest.raises(ConfigError) as caught:
        load_yaml(text, "x.yaml")
    (problem,) = caught.value.problems
    assert problem.startswith("x.yaml:") and problem.endswith(
        "a key must be a plain value such as a name or a number, not a list or mapping"
    )


def test_yaml_builds_no_python_objects():
    with pytest.raises(ConfigError) as caught:
        load_yaml("x: !!python/object/apply:os.system ['true']\n", "x.yaml")
    assert caught.value.problems == (
        "x.yaml:1:4: invalid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'",
    )


# -- pydantic's errors -----------------------------------------------------------------------


def test_key_paths_index_lists_and_dot_keys():
    assert key_path(("targets", 3, "slices", 0)) == "targets[3].slices[0]"
    assert key_path((0, "address")) == "[0].address"
    assert key_path(()) == ""


def test_an_unknown_key_lists_the_keys_of_its_mapping_and_suggests_the_closest():
    assert problems({"name": "a", "ports": [{"number": 1}], "prot": 1}) == [
        "prot: unknown key 'prot'; did you mean 'ports'? (keys here are: name, ports, options, peer, span)"
    ]


def test_the_known_keys_are_found_through_lists_mappings_by_name_and_optionals():
    assert problems({"name": "a", "ports": [{"numbr": 1}], "options": {"x": {"nmber": 2}}, "peer": {"zzz": 1}}) == [
        "ports[0].number: required key is missing",
        "ports[0].numbr: unknown key 'numbr'; did you mean 'number'? (keys here are: number)",
        "options.x.number: required key is missing",
        "options.x.nmber: unknown key 'nmber'; did you mean 'number'? (keys here are: number)",
        "peer.number: required key is missing",
        "peer.zzz: unknown key 'zzz' (keys here are: number)",
    ]


def test_missing_keys_and_items_lengths_and_a_validators_own_words():
    assert problems({}) == ["name: required key is missing", "ports: required key is missing"]
    assert problems({"name": "a", "ports": []}) == ["ports: expected at least 1 item, got 0"]
    assert problems({"name": "a", "ports": [{"number": 1}] * 5}) == ["ports: expected at most 4 items, got 5"]
    assert problems({"name": "a b", "ports": [{"number": 1}], "span": [1]}) == [
        "name: 'a b' has a space",
        "span[1]: item missing",
    ]


def test_a_wrong_type_or_range_says_what_was_expected_and_what_came_cut_to_sixty_characters():
    assert problems({"name": 123, "ports": [5, {"number": "x"}, {"number": 0}, {"number": "y" * 100}]}) == [
        "name: expected a valid string, got 123",
        "ports[0]: expected a mapping (key: value lines), got 5",
        "ports[1].number: expected a valid integer, got 'x'",
        "ports[2].number: expected greater than or equal to 1, got 0",
        "ports[3].number: expected a valid integer, got '" + "y" * 56 + "...",
    ]
    assert problems({"name": "a", "ports": {"number": 1}}) == ["ports: expected a list, got a mapping"]


def test_a_problem_with_the_whole_file_has_no_key_path():
    assert problems([1]) == ["expected a mapping (key: value lines), got a list"]


@pytest.mark.parametrize(
    "nested, where",
    [("[" * 5000 + "]" * 5000, "1:101"), ("".join(" " * i + "k:\n" for i in range(5000)), "100:100")],
)
def test_yaml_nested_thousands_deep_is_one_clear_problem(nested, where):
    with pytest.raises(ConfigError) as refused:
        load_yaml(nested, "deep.yaml")
    assert refused.value.problems == (f"deep.yaml:{where}: invalid YAML: nested too deeply (more than 100 levels)",)
