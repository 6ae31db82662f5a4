"""Every file of the shared corpus parses (or fails where it is meant to), diffs empty against itself
and against a cosmetically rewritten copy."""

from __future__ import annotations

import random

import pytest

from lbctl.errors import ParseError
from lbctl.semantic import diff_texts, parse_config
from tests.semantic.corpus import (
    CORPUS,
    EXPECTED_ERRORS,
    UNDETECTED,
    corpus_files,
    read,
    reformat_haproxy,
    reformat_nginx,
    root_of,
)

FILES = corpus_files()


def test_the_corpus_is_there() -> None:
    kinds = [kind for kind, _ in FILES]
    assert kinds.count("haproxy") >= 280
    assert kinds.count("nginx") >= 490
    assert all(rel in dict((r, k) for k, r in FILES) for rel in EXPECTED_ERRORS)


@pytest.mark.parametrize(("kind", "rel"), FILES, ids=[rel for _, rel in FILES])
def test_corpus_file(kind: str, rel: str) -> None:
    text, root = read(rel), root_of(rel)
    if rel in EXPECTED_ERRORS:
        with pytest.raises(ParseError) as caught:
            parse_config(kind, text, filename=rel, root=root)
        assert (caught.value.file, caught.value.line) == (rel, EXPECTED_ERRORS[rel])
        return
    parse_config(kind, text, filename=rel, root=root)
    assert diff_texts(kind, text, text, filename=rel, root=root).is_empty
    rng = random.Random(rel)
    rewritten = reformat_haproxy(text, rng) if kind == "haproxy" else reformat_nginx(rel, rng)
    assert rewritten != text
    diff = diff_texts(kind, text, rewritten, filename=rel, root=root)
    assert diff.is_empty, [c.text for c in diff.changes]


def test_spelling_mistake_is_not_caught_by_crossplane() -> None:
    # Documented limitation: crossplane flags an unknown directive only in strict mode.
    for rel in UNDETECTED:
        parse_config("nginx", read(rel), filename=rel, root=root_of(rel))


def test_includes_resolve_within_the_case_folder() -> None:
    rel = "nginx-crossplane/includes-globbed/nginx.conf"
    model = parse_config("nginx", read(rel), filename=rel, root=root_of(rel))
    labels = {s.label for s in model.sections}
    assert {"location _ (8080) › /foo", "location _ (8080) › /bar"} <= labels, labels
    regular = "nginx-crossplane/includes-regular/nginx.conf"
    model = parse_config("nginx", read(regular), filename=regular, root=CORPUS / "nginx-crossplane/includes-regular")
    assert [n.code for n in model.notes] == ["missing-include"]  # `include bar.conf`: nginx -t would refuse it
