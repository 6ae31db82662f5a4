"""Configs with a secret in every secret position, for the masking tests.

Each template holds `{s0}` ... `{sN}` placeholders; `fill` puts one distinctive random
string in each. The strings come from an alphabet no template uses otherwise, so
finding any of them in an output is a leak.
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

ALPHABET = "QXZJKVWqxzjkvw2357"
SECRET = st.text(alphabet=ALPHABET, min_size=12, max_size=24)

# Every secret position lbctl knows in HAProxy (userlist, stats auth, credential headers).
HAPROXY_SECRETS = """
userlist ops
    user admin password $6$saltsalt${s0}
    user bob insecure-password {s1}

frontend secrets
    bind 127.0.0.1:{port}
    stats enable
    stats auth admin:{s2}
    http-request set-header Authorization "Basic {s3} {s4}" if {{ path_beg /x }}
    http-request add-header X-Api-Token {s5}
    http-request set-header Proxy-Authorization Bearer\\ {s6}
    http-response set-header Set-Cookie "sid={s7}; Path=/"
    http-request set-header Cookie 'session={s8}'
    http-request set-header X-Client-Secret "{s9}"
    http-request replace-header X-Auth-Key (.*) "{s10}"
    default_backend web
"""
HAPROXY_BASE = """\
global
    maxconn 100

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s

backend web
    server s1 127.0.0.1:{port}
"""

NGINX = """\
events {{}}
http {{
    upstream app {{ server 127.0.0.1:9000; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_set_header Authorization "Basic {s0} {s1}";
            proxy_set_header X-Api-Key {s2};
            add_header Set-Cookie "sid={s3}; Path=/" always;
            more_set_headers "X-Auth-Token: {s4}";
            more_set_input_headers 'Authorization: Bearer {s5}';
            secure_link_secret {s6};
            grpc_set_header Cookie "a={s7}";
            fastcgi_param HTTP_AUTHORIZATION "Bearer {s8}";
            add_header X-Session-Token {s9};
            proxy_set_header X-Auth-Request-Token
                "Bearer {s11}";
            more_set_headers
                'X-Other: visible'
                'X-Api-Key: {s12}';
            proxy_pass http://app;
        }}
        ssl_certificate_key "data:-----BEGIN PRIVATE KEY-----\\n{s10}\\n-----END PRIVATE KEY-----";
    }}
}}
"""

CADDY_JSON = """\
{{
  "apps": {{
    "http": {{
      "servers": {{
        "srv0": {{
          "listen": ["127.0.0.1:{port}"],
          "routes": [
            {{
              "match": [{{"header": {{"X-Api-Key": ["{s0}"]}}}}],
              "handle": [
                {{"handler": "headers", "request": {{"set": {{"Authorization": ["Bearer {s1}"]}}}}}},
                {{"handler": "headers", "response": {{"set": {{"authorization": ["{s7}"]}}}}}},
                {{"handler": "authentication", "providers": {{"http_basic": {{"accounts": [
                  {{"username": "bob", "password": "JDJhJDE0J{s2}"}}
                ]}}}}}},
                {{"handler": "reverse_proxy", "upstreams": [{{"dial": "127.0.0.1:9000"}}],
                  "headers": {{"request": {{"set": {{"X-Auth-Token": ["{s3}"], "Cookie": ["a={s4}"]}}}}}}}}
              ]
            }}
          ]
        }}
      }}
    }},
    "tls": {{
      "certificates": {{
        "load_pem": [{{"certificate": "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----",
                      "key": "-----BEGIN EC PRIVATE KEY-----\\n{s5}\\n{s6}\\n-----END EC PRIVATE KEY-----\\n"}}]
      }}
    }}
  }}
}}
"""

CADDYFILE = """\
:{port} {{
	@api header X-Api-Key {s0}
	basicauth /admin/* {{
		bob JDJhJDE0J{s1}
	}}
	header Authorization "Bearer {s2} {s3}"
	header {{
		X-Api-Token {s4}
	}}
	reverse_proxy @api 127.0.0.1:9000 {{
		header_up X-Auth-Token "{s5}"
		header_up Cookie {s6}
	}}
}}
"""

TEMPLATES = {
    "haproxy": HAPROXY_BASE + HAPROXY_SECRETS,
    "nginx": NGINX,
    "caddy-json": CADDY_JSON,
    "caddyfile": CADDYFILE,
}


def slots(template: str) -> int:
    """How many secrets `template` takes."""
    return len({name for _, name, _, _ in string.Formatter().parse(template) if name and name.startswith("s")})


def fill(template: str, secrets: list[str], port: int = 8080, **extra: object) -> str:
    values = {f"s{i}": secrets[i % len(secrets)] + str(i) for i in range(slots(template))}
    return template.format(port=port, **values, **extra)


def leaked(text: str, secrets: list[str]) -> list[str]:
    """The secrets (or a 10-character piece of one) that `text` shows."""
    found = []
    for secret in secrets:
        pieces = {secret, secret[:10], secret[-10:]}
        found.extend(p for p in pieces if p in text)
    return found
