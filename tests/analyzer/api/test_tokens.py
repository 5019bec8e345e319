"""Write tokens (analyzer.api.tokens): whose token a request carries, and the site token files."""

from __future__ import annotations

import pytest

from analyzer.api.tokens import MIN_SITE_TOKEN, Writer, WriteTokens, load_site_tokens

A = "a" * MIN_SITE_TOKEN
B = "b" * MIN_SITE_TOKEN


def test_a_token_names_its_site_or_the_operator_and_a_near_miss_is_nobody():
    tokens = WriteTokens(shared="operator-token", by_site={"cnty1a": A, "cnty2a": B})
    assert tokens.writer(A) == Writer("cnty1a") and tokens.writer(B) == Writer("cnty2a")
    assert tokens.writer("operator-token") == Writer(None)
    assert tokens.writer(A[:-1]) is None and tokens.writer(A + "a") is None and tokens.writer("") is None


def test_no_tokens_means_nothing_is_configured():
    assert not WriteTokens().configured and WriteTokens(shared="x").configured
    assert WriteTokens(by_site={"s": A}).configured and WriteTokens().writer("x") is None


def test_two_sites_with_one_token_are_refused():
    with pytest.raises(ValueError, match="shares its token"):
        WriteTokens(by_site={"cnty1a": A, "cnty2a": A})


def test_site_tokens_load_from_a_file_of_lines(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# sites\ncnty1a {A}\n\ncnty2a {B}  # second\n")
    assert load_site_tokens(path) == {"cnty1a": A, "cnty2a": B}


def test_site_tokens_load_from_a_directory_of_files(tmp_path):
    (tmp_path / "cnty1a").write_text(A + "\n")
    (tmp_path / "cnty2a").write_text(B)
    (tmp_path / ".hidden").write_text("ignored")
    assert load_site_tokens(tmp_path) == {"cnty1a": A, "cnty2a": B}


@pytest.mark.parametrize(
    "text, problem",
    [
        ("cnty1a short\n", r"tokens:1: the token of site 'cnty1a' must be 16\+ characters"),
        (f"cnty1a {A} extra\n", r"tokens:1: expected 'SITE TOKEN'"),
        (f"cnty1a {A}\ncnty1a {B}\n", r"tokens:2: site 'cnty1a' has a token already"),
        ("# nothing\n", "no site tokens"),
    ],
)
def test_a_bad_site_token_file_is_refused_naming_the_line(tmp_path, text, problem):
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem):
        load_site_tokens(path)


def test_a_missing_or_huge_token_file_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"cannot read .*absent: No such file"):
        load_site_tokens(tmp_path / "absent")
    huge = tmp_path / "huge"
    huge.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ValueError, match="huge: over 1048576 bytes"):
        load_site_tokens(huge)
