"""Property tests on real configs: semantic edits are reported exactly, cosmetic edits not at all."""

from __future__ import annotations

import random
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbctl.semantic import diff_texts, parse_config
from lbctl.semantic.model import keyed_servers
from tests.semantic.corpus import EXPECTED_ERRORS, corpus_files, read, reformat_haproxy, reformat_nginx, root_of

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HAPROXY = [rel for kind, rel in corpus_files() if kind == "haproxy"]
NGINX = [rel for kind, rel in corpus_files() if kind == "nginx" and rel not in EXPECTED_ERRORS]
# The server's name and whole address: a quoted address (`unix@"${tmpdir}/x.sock"`) is not one to edit.
_SERVER_LINE = re.compile(r"^(\s*server\s+[^\s'\"#]+\s+[^\s'\"#]+)(?=\s|$)")


def _haproxy_targets() -> tuple[list[tuple[str, str, str, int, int]], list[tuple[str, str, str, int, int]]]:
    """Pool servers (file, section, server, line, weight) and adjacent rule pairs (file, section, chain, a, b)."""
    servers, rule_pairs = [], []
    for rel in HAPROXY:
        text = read(rel)
        lines = text.splitlines()
        for section in parse_config("haproxy", text, filename=rel).sections:
            for name, server in keyed_servers(section).items():
                line = lines[server.line - 1]
                if section.is_pool and _SERVER_LINE.match(line) and not re.search(r"weight\s+\$", line):
                    servers.append((rel, section.label, name, server.line, server.weight))
            for a, b in zip(section.rules, section.rules[1:], strict=False):
                between = lines[a.line : b.line - 1]
                if a.chain == b.chain and a.text != b.text and not any(x.strip().startswith(".") for x in between):
                    rule_pairs.append((rel, section.label, a.chain, a.line, b.line))
    return servers, rule_pairs


SERVERS, RULE_PAIRS = _haproxy_targets()
BACKENDS = [
    (rel, s.name, s.line)
    for rel in HAPROXY
    for s in parse_config("haproxy", read(rel), filename=rel).sections
    if s.type == "backend" and "#" not in s.name and "$" not in s.name
]


def _edit(rel: str, line: int, replacement: str | None) -> tuple[str, str]:
    text = read(rel)
    lines = text.splitlines()
    if replacement is None:
        del lines[line - 1]
    else:
        lines[line - 1] = replacement
    return text, "\n".join(lines) + "\n"


def _changes(rel: str, old: str, new: str, kind: str = "haproxy") -> list[tuple[str, str, str | None]]:
    diff = diff_texts(kind, old, new, filename=rel, root=root_of(rel))
    return [(c.section, c.action, c.subject) for c in diff.changes]


def test_there_is_enough_to_edit() -> None:
    assert len(SERVERS) > 300 and len(RULE_PAIRS) > 100 and len(BACKENDS) > 200


@FAST
@given(st.sampled_from(SERVERS), st.integers(0, 256))
def test_weight_change_is_reported_exactly(target: tuple[str, str, str, int, int], weight: int) -> None:
    rel, label, name, line, old_weight = target
    original = read(rel).splitlines()[line - 1]
    edited = _SERVER_LINE.sub(lambda m: f"{m.group(1)} weight {weight}", re.sub(r"\s+weight\s+\d+", "", original))
    old, new = _edit(rel, line, edited)
    diff = diff_texts("haproxy", old, new, filename=rel)
    expected = [] if weight == old_weight else [f"{label}: server {name} weight {old_weight} → {weight}"]
    assert [c.text for c in diff.changes] == expected


@FAST
@given(st.sampled_from(SERVERS))
def test_removed_server_is_reported_exactly(target: tuple[str, str, str, int, int]) -> None:
    rel, label, name, line, _ = target
    old, new = _edit(rel, line, None)
    assert _changes(rel, old, new) == [(label, "removed", name)]


@FAST
@given(st.sampled_from(SERVERS), st.integers(1, 256))
def test_added_server_is_reported_exactly(target: tuple[str, str, str, int, int], weight: int) -> None:
    rel, label, _, line, _ = target
    original = read(rel).splitlines()[line - 1]
    old, new = _edit(rel, line, f"{original}\n    server lbctl_added 192.0.2.1:8080 weight {weight}")
    diff = diff_texts("haproxy", old, new, filename=rel)
    assert [(c.section, c.action, c.subject) for c in diff.changes] == [(label, "added", "lbctl_added")]
    assert diff.changes[0].text.startswith(f"{label}: server lbctl_added added (192.0.2.1:8080, weight {weight}")


@FAST
@given(st.sampled_from(RULE_PAIRS))
def test_swapped_rules_are_reported_as_reordered(pair: tuple[str, str, str, int, int]) -> None:
    rel, label, chain, a, b = pair
    text = read(rel)
    lines = text.splitlines()
    lines[a - 1], lines[b - 1] = lines[b - 1], lines[a - 1]
    assert _changes(rel, text, "\n".join(lines)) == [(label, "reordered", chain)]


@FAST
@given(st.sampled_from(BACKENDS))
def test_renamed_backend_is_reported_as_renamed(target: tuple[str, str, int]) -> None:
    rel, name, line = target
    original = read(rel).splitlines()[line - 1]
    renamed = re.sub(rf"^(\s*backend\s+){re.escape(name)}(?=\s|$)", rf"\g<1>{name}_renamed", original)
    old, new = _edit(rel, line, renamed)
    assert _changes(rel, old, new) == [(f"backend {name}_renamed", "renamed", None)]


@FAST
@given(st.sampled_from(HAPROXY), st.integers())
def test_cosmetic_haproxy_edits_are_not_changes(rel: str, seed: int) -> None:
    text = read(rel)
    assert diff_texts("haproxy", text, reformat_haproxy(text, random.Random(seed)), filename=rel).is_empty


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NGINX), st.integers())
def test_cosmetic_nginx_edits_are_not_changes(rel: str, seed: int) -> None:
    text, root = read(rel), root_of(rel)
    rewritten = reformat_nginx(rel, random.Random(seed))
    assert diff_texts("nginx", text, rewritten, filename=rel, root=root).is_empty


def _nginx_upstream_servers() -> list[tuple[str, str, str, int, int]]:
    found = []
    for rel in NGINX:
        text = read(rel)
        lines = text.splitlines()
        for section in parse_config("nginx", text, filename=rel, root=root_of(rel)).pools():
            for name, server in keyed_servers(section).items():
                if lines[server.line - 1].count("server") == 1 and "#" not in name:
                    found.append((rel, section.label, name, server.line, server.weight))
    return found


NGINX_SERVERS = _nginx_upstream_servers()


@FAST
@given(st.sampled_from(NGINX_SERVERS), st.integers(1, 100))
def test_nginx_weight_change_is_reported_exactly(target: tuple[str, str, str, int, int], weight: int) -> None:
    rel, label, name, line, old_weight = target
    original = re.sub(r"\s+weight=\d+", "", read(rel).splitlines()[line - 1])
    edited = re.sub(rf"(server\s+{re.escape(name)})(?=[\s;])", rf"\g<1> weight={weight}", original, count=1)
    old, new = _edit(rel, line, edited)
    diff = diff_texts("nginx", old, new, filename=rel, root=root_of(rel))
    expected = [] if weight == old_weight else [f"{label}: server {name} weight {old_weight} → {weight}"]
    assert [c.text for c in diff.changes] == expected
