"""Secrets in load-balancer configs: which values are secret, and how every output hides them.

One catalogue says what is secret (`secret_spans` over the words of a statement,
`secret_header`, `secret_field`, PEM private keys and password hashes anywhere), and it
is used in two ways:

- the parsers `seal` a secret where they read it: a keyed digest that compares equal only
  to the same secret, in this process, so the differ sees that a secret changed without
  ever holding it in clear;
- `mask_text` finds secrets in text lbctl did not parse into a model (the unified diff, a
  validator's output, error messages, journal events) by the same rules.

Every output ends in `hide`, which shows a seal as `****`; a change that differs only in a
secret reads "secret changed", never the value. Each secret value met is also remembered for
the life of the process, so a message that quotes it out of its context still shows `****`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

MASK = "****"
SECRET_CHANGED = "secret changed"
_SEAL_KEY = os.urandom(16)
_SEALED = re.compile(r"\*\*\*\*\{[0-9a-f]{12}\}")
_KNOWN: set[str] = set()
_KNOWN_MIN = 8  # shorter values are too likely to be ordinary words

WHOLE, AFTER_COLON = 0, 1  # how much of a word is secret: all of it, or what follows its first ':'

# -- what is secret ------------------------------------------------------------------------------

_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_HEADER_WORDS = ("token", "key", "secret", "auth", "password", "passwd", "credential")
_FIELD_NAMES = frozenset({"key", "password", "passwd", "secret", "token", "salt", "private_key"})
_FIELD_WORDS = ("password", "passwd", "secret", "token")
_FIELD_SUFFIXES = ("_key", "-key", "_salt")

# Statements that set a header: `KEYWORD [caddy matcher] NAME VALUE...` (HAProxy, nginx, Caddyfile).
_HEADER_SETTERS = frozenset(
    [
        "set-header",
        "add-header",
        "replace-header",
        "replace-value",
        "hdr",  # http-check send hdr NAME VALUE
        "proxy_set_header",
        "grpc_set_header",
        "add_header",
        "add_trailer",
        "fastcgi_param",
        "uwsgi_param",
        "scgi_param",
        "header",
        "header_up",
        "header_down",
        "request_header",
    ]
)
# Statements whose words are `NAME: VALUE` headers (nginx headers-more, HAProxy's legacy req*/rsp*).
_INLINE_SETTERS = frozenset(
    ["more_set_headers", "more_set_input_headers", "reqadd", "reqiadd", "rspadd", "rspiadd", "reqrep", "rsprep"]
)
_BASIC_AUTH_BLOCKS = frozenset({"basic_auth", "basicauth"})
_HEADER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*")
_STOP = frozenset({"if", "unless", ";", "{", "}", "→", "›", "always"})


def secret_header(name: str) -> bool:
    """Whether a header named `name` carries credentials (`Authorization`, `X-Api-Key`, ...)."""
    lowered = name.lower().lstrip("+-?>").rstrip(":")
    return lowered in _CREDENTIAL_HEADERS or any(word in lowered for word in _HEADER_WORDS)


def secret_field(name: str) -> bool:
    """Whether a JSON field (a Caddy config key) holds a secret; header names in header maps count."""
    lowered = name.lower()
    if lowered in _FIELD_NAMES or lowered in _CREDENTIAL_HEADERS or lowered.endswith(_FIELD_SUFFIXES):
        return True
    if any(word in lowered for word in _FIELD_WORDS):
        return True
    # Caddy's own fields are snake_case: a key with a capital or a dash is a header name.
    return ("-" in name or name[:1].isupper()) and secret_header(name)


def _norm(word: str) -> str:
    return word.lower()


def secret_spans(words: Sequence[str]) -> dict[int, int]:
    """Which words of one statement are secret: index → `WHOLE` or `AFTER_COLON`."""
    spans: dict[int, int] = {}
    n = len(words)
    for i, word in enumerate(words):
        kw = _norm(word).lstrip("+-") if i == 0 else _norm(word)
        if kw in _HEADER_SETTERS and _sets_a_header(kw, words, i):
            j = i + 1
            while j < n and kw.startswith(("header", "request_header")) and words[j][:1] in ("@", "/", "*"):
                j += 1  # a Caddyfile matcher before the header name
            if j < n and secret_header(words[j]):
                _until_stop(words, j + 1, spans)
        elif kw in _INLINE_SETTERS:
            for k in range(i + 1, n):
                if _norm(words[k]) in _STOP:
                    break
                name, colon, _ = words[k].partition(":")
                if colon and secret_header(name.strip()):
                    spans[k] = AFTER_COLON
        elif kw in ("password", "insecure-password") and i >= 2 and _norm(words[i - 2]) == "user" and i + 1 < n:
            spans[i + 1] = WHOLE  # HAProxy userlist: user NAME password HASH
        elif kw == "auth" and i >= 1 and _norm(words[i - 1]) == "stats" and i + 1 < n:
            spans[i + 1] = AFTER_COLON if ":" in words[i + 1] else WHOLE
        elif kw == "secure_link_secret":
            _until_stop(words, i + 1, spans)
        elif kw.endswith("certificate_key") and i + 1 < n and words[i + 1].startswith("data:"):
            spans[i + 1] = WHOLE
        elif word.endswith(":") and i + 1 < n and _header_like(word[:-1]) and secret_header(word[:-1]):
            _until_stop(words, i + 1, spans)  # free text: `Authorization: Basic ...`
        elif ":" in word and i not in spans:
            name, _, rest = word.partition(":")
            if rest[:1].isspace() and _header_like(name) and secret_header(name):
                spans[i] = AFTER_COLON  # one quoted word: "X-Api-Key: value"
    return spans


def _sets_a_header(kw: str, words: Sequence[str], i: int) -> bool:
    """Not HAProxy's `capture request header NAME len N`: Caddyfile's `header` starts a statement."""
    if kw in ("header", "request_header"):
        before = [w for w in words[:i] if w.strip("+-")]  # a diff's `+`/`-` is not a word
        return not before or (len(before) == 1 and before[0].startswith("@"))
    if kw == "hdr":
        return "send" in (_norm(w) for w in words[:i])
    return True


def _header_like(name: str) -> bool:
    """`X-Api-Key` or `Authorization` written in free text, not just any word before a colon."""
    return _HEADER_NAME.fullmatch(name) is not None and (name.lower() in _CREDENTIAL_HEADERS or "-" in name)


def _until_stop(words: Sequence[str], start: int, spans: dict[int, int]) -> None:
    for k in range(start, len(words)):
        if _norm(words[k]) in _STOP:
            return
        spans[k] = WHOLE


# -- sealing (parsers) ----------------------------------------------------------------------------


def seal(secret: str) -> str:
    """Replace a secret by a marker that compares equal only to the same secret, in this process."""
    import hashlib
    import hmac

    remember(secret)
    digest = hmac.new(_SEAL_KEY, secret.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()
    return f"{MASK}{{{digest[:12]}}}"


def remember(secret: str) -> None:
    """Hide `secret` in every later message of this process, whatever its context.

    What is remembered are the words of the value that look like key material (the token
    of `Basic TOKEN`, a line of a PEM key): never a variable, a path or an ordinary word,
    which other messages may need to show (`_keylike`).
    """
    for part in re.split(r"\\n|[^A-Za-z0-9+/._~-]+|=(?=.)", _SEALED.sub(" ", secret)):
        if _keylike(part):
            _KNOWN.add(part)


def _keylike(text: str) -> bool:
    if len(text) < _KNOWN_MIN or text[0] in "-/." or _ADDRESS.fullmatch(text):
        return False
    digit = any(c.isdigit() for c in text)
    mixed = any(c.isupper() for c in text) and any(c.islower() for c in text)
    return digit or mixed


def seal_words(words: Sequence[str]) -> list[str]:
    """`words` of one statement with each secret sealed, and secrets inside any word (PEM, hashes)."""
    spans = secret_spans(words)
    out = []
    for i, word in enumerate(words):
        how = spans.get(i)
        if how == WHOLE:
            word = seal(word)
        elif how == AFTER_COLON:
            name, _, rest = word.partition(":")
            value = rest.lstrip()
            word = f"{name}:{rest[: len(rest) - len(value)]}{seal(value)}" if value else word
        elif _EMBEDDED_HINT.search(word):
            word = _mask_embedded(word, sealed=True)
        out.append(word)
    return out


def sealed_parts(text: str) -> list[str]:
    """The seals in `text`, in order."""
    return _SEALED.findall(text) if MASK in text else []


def is_sealed(text: str) -> bool:
    return MASK in text and _SEALED.search(text) is not None


def only_secrets_differ(old: str, new: str) -> bool:
    """Two values that differ, and only in sealed secrets: shown as "secret changed"."""
    return old != new and is_sealed(old) and _SEALED.sub(MASK, old) == _SEALED.sub(MASK, new)


# -- masking text (every output) ------------------------------------------------------------------

_PEM = re.compile(r"(-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----)(.*?)(-----END \2PRIVATE KEY-----|\Z)", re.S)
_HASHES = re.compile(
    r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}"  # bcrypt
    r"|\$(?:1|5|6|apr1|md5)\$(?:rounds=\d+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{16,}"  # crypt(3), htpasswd
    r"|\$y\$[./A-Za-z0-9]+\$[./A-Za-z0-9]+\$[./A-Za-z0-9]{16,}"  # yescrypt
    r"|\$argon2(?:id|i|d)\$[^\s\"';]+"
    r"|\bJDJ[A-Za-z0-9]JD[A-Za-z0-9+/]{16,}={0,2}"  # a bcrypt hash in base64 (Caddy's basic_auth)
    r"|\{(?:SHA|SSHA|PLAIN)\}[^\s\"';]+"
)
_JSON_PAIR = re.compile(r'"((?:[^"\\\n]|\\.)*)"(\s*:\s*)("(?:[^"\\]|\\.)*"|\[(?:\s*"(?:[^"\\]|\\.)*"\s*,?)*\s*\])')
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
# Lines (or words) that may hold a secret by the rules above; the others are skipped unread.
# Searched in lower-cased text: a case-insensitive alternation is ten times slower in `re`.
_TRIGGER = re.compile(
    r"header|hdr|_param|password|passwd|auth|secret|token|key|cookie|salt|credential|"
    r"more_set|reqadd|reqiadd|rspadd|rspiadd|reqrep|rsprep"
)
_EMBEDDED_HINT = re.compile(r'\$|\{|JDJ|PRIVATE KEY|"')
_ALNUM = re.compile(r"[^\W_]")
_ADDRESS = re.compile(r"(?=.*[.:])[0-9A-Fa-f.:\[\]]+|[a-z0-9.-]+\.[a-z]{2,}")  # 10.0.0.1:80, [::1], a.example


def hide(text: str) -> str:
    """What every output shows of `text`: sealed secrets and any secret found in it as `****`."""
    if MASK in text:
        text = _SEALED.sub(MASK, text)
    return mask_text(text)


def mask_message(text: str) -> str:
    """A message (an error, a validator's output, an event's): `hide`, and every secret value
    met so far in this process hidden too, since a message may quote one out of its context."""
    return _mask_known(hide(text))


def mask_text(text: str, *, sealed: bool = False) -> str:
    """`text` with every secret the catalogue finds in it masked, line by line and across lines.

    With `sealed`, secrets become seals (so two texts can still be compared, e.g. by a
    unified diff, before `hide` shows them as `****`).
    """
    if len(text) < 4:
        return text
    if _EMBEDDED_HINT.search(text):
        text = _mask_embedded(text, sealed=sealed)
    if _TRIGGER.search(text.lower()):
        lines = text.split("\n")
        block: str | None = None
        for n, line in enumerate(lines):
            if block is None and not _TRIGGER.search(line.lower()):
                continue
            lines[n], block = _mask_line(line, block, sealed)
        text = "\n".join(lines)
    return text


def mask_json(data: Any) -> Any:
    """A JSON-able value with `mask_message` applied to every string in it (keys included)."""
    if isinstance(data, str):
        return mask_message(data)
    if isinstance(data, dict):
        return {mask_json(k) if isinstance(k, str) else k: mask_json(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [mask_json(v) for v in data]
    return data


def _conceal(value: str, sealed: bool) -> str:
    if not _ALNUM.search(_SEALED.sub("", value).replace(MASK, "")):
        return value  # already masked (or nothing to hide): keep its punctuation, e.g. `["****"]`
    return seal(value) if sealed else MASK


def _mask_embedded(text: str, *, sealed: bool) -> str:
    """Secrets recognisable wherever they are: PEM private keys, password hashes, JSON secret fields."""
    if "PRIVATE KEY-----" in text:
        text = _PEM.sub(lambda m: f"{m.group(1)}{_conceal(m.group(3), sealed)}{m.group(4)}", text)
    text = _HASHES.sub(lambda m: _conceal(m.group(0), sealed), text)
    if '"' in text and ":" in text:
        text = _JSON_PAIR.sub(lambda m: _json_pair(m, sealed), text)
    return text


def _json_pair(match: re.Match[str], sealed: bool) -> str:
    key, sep, value = match.group(1), match.group(2), match.group(3)
    if not secret_field(key):
        return match.group(0)

    import json

    def one(string: re.Match[str]) -> str:
        try:
            inner = json.loads(string.group(0))
        except ValueError:
            inner = string.group(0)[1:-1]
        return f'"{_conceal(str(inner), sealed)}"'

    return f'"{key}"{sep}{_JSON_STRING.sub(one, value)}'


def _mask_line(line: str, block: str | None, sealed: bool) -> tuple[str, str | None]:
    """One line masked; `block` is the Caddyfile block the line is in (`basic_auth`, `header`)."""
    tokens = _tokens(line)
    words = [t[2] for t in tokens]
    spans: dict[int, int] = {}
    if block in ("nginx-value", "nginx-inline"):
        for k, word in enumerate(words):
            if word == ";":
                block = None
                break
            name, colon, _ = word.partition(":")
            if block == "nginx-value":
                spans[k] = WHOLE
            elif colon and secret_header(name.strip()):
                spans[k] = AFTER_COLON
    elif block is not None:
        if words[:1] == ["}"]:
            block = None
        elif block == "basic_auth":
            spans = {k: WHOLE for k in range(1, len(words)) if words[k] != "{"}
        elif words and secret_header(words[0]):
            _until_stop(words, 1, spans)
    else:
        spans = secret_spans(words)
        block = _open_statement(words)
        if words and words[-1] == "{":
            lowered = [_norm(w).lstrip("+-") for w in words]
            if _BASIC_AUTH_BLOCKS & set(lowered):
                block = "basic_auth"
            elif lowered[0] == "header":
                block = "header"
    for k in sorted(spans, reverse=True):
        start, end, _ = tokens[k]
        line = line[:start] + _mask_token(line[start:end], spans[k], sealed) + line[end:]
    return line, block


def _open_statement(words: list[str]) -> str | None:
    """An nginx statement with a secret that goes on past this line (no `;` yet): how to go on."""
    if ";" in words:
        return None
    for i, word in enumerate(words):
        kw = _norm(word)
        if kw in _INLINE_SETTERS and "_" in kw:
            return "nginx-inline"
        if kw == "secure_link_secret":
            return "nginx-value"
        if "_" in kw and kw in _HEADER_SETTERS and i + 1 < len(words) and secret_header(words[i + 1]):
            return "nginx-value"
    return None


def _mask_token(raw: str, how: int, sealed: bool) -> str:
    quote = raw[0] if raw[:1] in ("'", '"') else ""
    body = raw[1:-1] if quote and len(raw) > 1 and raw.endswith(quote) else raw[len(quote) :]
    close = quote if quote and len(raw) > 1 and raw.endswith(quote) else ""
    prefix = ""
    if how == AFTER_COLON:
        colon = body.find(":")
        if colon < 0:
            return raw
        rest = body[colon + 1 :]
        value = re.sub(r"^(?:\s|\\ )+", "", rest)
        prefix, body = body[: colon + 1] + rest[: len(rest) - len(value)], value
        if not body:
            return raw
    return f"{quote}{prefix}{_conceal(_unescape(body), sealed)}{close}"


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text) if "\\" in text else text


def _tokens(line: str) -> list[tuple[int, int, str]]:
    """The words of a config line as (start, end, unquoted text); `;`, `{`, `}` apart; `#` ends it."""
    tokens: list[tuple[int, int, str]] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c.isspace():
            i += 1
            continue
        if c == "#":
            break
        start, text = i, []
        if c in ";{}" and (i + 1 == n or line[i + 1].isspace() or line[i + 1] in ";"):
            tokens.append((i, i + 1, c))
            i += 1
            continue
        while i < n and not line[i].isspace():
            c = line[i]
            if c in "\"'":
                end = i + 1
                while end < n and line[end] != c:
                    end += 2 if line[end] == "\\" else 1
                text.append(_unescape(line[i + 1 : min(end, n)]))
                i = min(end + 1, n)
            elif c == "\\" and i + 1 < n:
                text.append(line[i + 1])
                i += 2
            elif c == ";" and text:
                break  # `value;` ends an nginx statement
            else:
                text.append(c)
                i += 1
        tokens.append((start, i, "".join(text)))
    return tokens


def _mask_known(text: str) -> str:
    if not _KNOWN:
        return text
    global _known_pattern
    if _known_pattern is None or _known_pattern[0] != len(_KNOWN):
        alternatives = "|".join(re.escape(v) for v in sorted(_KNOWN, key=len, reverse=True))
        _known_pattern = (len(_KNOWN), re.compile(alternatives))
    return _known_pattern[1].sub(MASK, text)


_known_pattern: tuple[int, re.Pattern[str]] | None = None  # _KNOWN only grows: its size says if it changed
