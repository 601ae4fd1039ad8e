"""The OpenAPI document describes every route, and requests generated from it (valid ones
and deliberately invalid ones, by schemathesis) never get a 5xx, nor a body that is not
strict JSON where JSON is answered.

The examples are fixed (the "falaj" Hypothesis profile derandomizes), so CI sees what a
developer saw; HYPOTHESIS_PROFILE=explore searches afresh.
"""

import copy
import json
import re
from collections import defaultdict
from functools import partial

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import admin_token
from webui import create_app
from webui.openapi import document

MAX_EXAMPLES = 20  # per operation (about 20) and per documented example (8): about 40 s
LIVE = {"name": "credit", "version": "1"}  # what the `client` fixture deploys
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
# Operations that take no input and do seconds of work each (a self-test, a backup): one
# call checks their answer against the document; twenty would only repeat it.
ONCE = {"POST /api/v1/selftest", "POST /selftest", "POST /api/v1/backups",
        "POST /operations/backups"}  # fmt: skip
PAGES = 5  # per dashboard page or form: they parse few inputs, the JSON API many


def examples_for(label: str) -> int:
    """How many requests Hypothesis draws for one operation ("POST /api/v1/...")."""
    if label in ONCE:
        return 1
    path = label.split(" ", 1)[1]
    api = path.startswith(
        ("/api/", "/v2", "/invocations", "/models/", "/health", "/ping", "/metrics")
    )
    return MAX_EXAMPLES if api else PAGES


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: /v2/models/<name> -> /v2/models/{name}."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_route_is_documented(app):
    flask_app = create_app(app, {"TESTING": True})
    routes = {
        (openapi_path(rule.rule), method.lower())
        for rule in flask_app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, ops in document()["paths"].items() for method in ops}
    assert routes - documented == set(), "routes missing from webui/openapi.py"
    assert documented - routes == set(), "documented operations that no route serves"
    served = flask_app.test_client().get(
        "/api/openapi.json", headers={"Authorization": f"Bearer {admin_token(app)}"}
    )
    assert served.status_code == 200 and served.get_json() == json.loads(json.dumps(document()))


def described(e: BaseException) -> str:
    """An exception with Hypothesis's notes (the falsifying example), for a report."""
    lines = [f"{type(e).__name__}: {e}", *getattr(e, "__notes__", [])]
    lines += [described(sub) for sub in getattr(e, "exceptions", ())]
    return "\n".join(lines)


def run_all(checks) -> None:
    """Run each (label, check); report every failure, not just the first."""
    failures = []
    for label, check in checks:
        try:
            check()
        except (Exception, BaseExceptionGroup) as e:
            failures.append(f"{label}: {described(e)}")
    assert not failures, "\n\n".join(failures)


def fuzzed(strategy, test, examples: int = MAX_EXAMPLES):
    """A Hypothesis test of ``test`` on values drawn from ``strategy``."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value):
        test(value)

    return run


def strict_json(data: bytes):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(data, parse_constant=refuse)


def live_half_the_time(context, path_parameters):
    """Name the deployed model and its live version in half the cases, to get past the
    404 into the checks of the request body."""
    if not path_parameters:
        return st.just(path_parameters)
    live = {k: LIVE.get(k, v) for k, v in path_parameters.items()}
    return st.sampled_from([path_parameters, live])


def check_response(case) -> None:
    response = case.call()
    assert response.status_code < 500, f"{response.status_code}: {response.text[:2000]}"
    if response.headers.get("Content-Type", [""])[0].startswith("application/json"):
        strict_json(response.content)
    case.validate_response(response, checks=CHECKS)  # the answer is what the document says


def with_credential(client):
    """The client's WSGI app, every request carrying the client's admin token."""
    app, credential = client.application, client.environ_base["HTTP_AUTHORIZATION"]

    def wsgi(environ, start_response):
        environ.setdefault("HTTP_AUTHORIZATION", credential)
        return app(environ, start_response)

    return wsgi


def test_no_5xx_and_only_strict_json(client):
    """Every operation, with its documented examples, valid requests and invalid ones.
    The app is in testing mode, so an unhandled exception fails with its traceback."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", with_credential(client))
    schema.hook("flatmap_path_parameters")(live_half_the_time)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert ONCE <= {op.label for op in operations}, "ONCE names an operation not documented"
    run_all(
        (
            op.label,
            fuzzed(
                st.one_of(
                    *schema.get_strategies_from_examples(op),
                    op.as_strategy(GenerationMode.POSITIVE),
                    op.as_strategy(GenerationMode.NEGATIVE),
                ),
                check_response,
                examples_for(op.label),
            ),
        )
        for op in operations
    )


# -- mutated examples ------------------------------------------------------------------
# schemathesis varies a request within its schema, or breaks it near the top; the bugs
# that hide deeper (a list where a tensor's datatype goes, a number where "outputs" goes)
# are found by taking each documented example and replacing or removing nested values.
# Each place in the document's structure (inputs[*].datatype, say) is as likely a target
# as any other, however many values sit there.

DELETE = object()  # stands for removing the value
CONFUSING = [None, True, -1, 1e308, "x", [], [[1]], {}, {"name": "x"}]
JSON_VALUES = st.sampled_from(CONFUSING) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


def nodes(value, path=()):
    """The path of every value in a JSON document, the root included."""
    yield path
    if isinstance(value, dict | list):
        for key, child in value.items() if isinstance(value, dict) else enumerate(value):
            yield from nodes(child, (*path, key))


@st.composite
def mutated(draw, example):
    body = copy.deepcopy(example)
    for _ in range(draw(st.integers(1, 2))):
        places = defaultdict(list)  # inputs[*].datatype -> each tensor's datatype
        for path in nodes(body):
            places[tuple("*" if isinstance(k, int) else k for k in path)].append(path)
        path = draw(st.sampled_from(places[draw(st.sampled_from(list(places)))]))
        if not path:  # copies: a second step must not change CONFUSING's shared values
            body = copy.deepcopy(draw(JSON_VALUES))
            continue
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = copy.deepcopy(draw(JSON_VALUES))
        else:
            del parent[path[-1]]
    return body


def examples(media: str):
    """(URL, value) for every documented example body of this media type."""
    for path, ops in document()["paths"].items():
        content = ops.get("post", {}).get("requestBody", {}).get("content", {})
        for example in content.get(media, {}).get("examples", {}).values():
            yield path.format(**LIVE), example["value"]


def broken(example):
    """The example with one place broken: for each place in its structure, the first value
    there replaced by each confusing value in turn, or removed."""
    places = {}
    for path in nodes(example):
        places.setdefault(tuple("*" if isinstance(k, int) else k for k in path), path)
    for path in places.values():
        for value in [*CONFUSING, DELETE]:
            body = copy.deepcopy(example)
            if not path:
                if value is not DELETE:
                    yield value
                continue
            parent = body
            for key in path[:-1]:
                parent = parent[key]
            if value is DELETE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            yield body


def post(client, url: str, data: str, content_type: str = "application/json") -> None:
    """POST a body; assert the answer is below 500 and in strict JSON."""
    try:
        r = client.post(url, data=data, content_type=content_type)
    except Exception as e:  # testing mode: Flask re-raises what would be a 500
        raise AssertionError(f"{data[:1000]!r} raised {type(e).__name__}: {e}") from e
    assert r.status_code < 500, (
        f"{data[:1000]!r} -> {r.status_code}: {r.get_data(as_text=True)[:2000]}"
    )
    strict_json(r.data)


def test_every_example_with_one_place_broken_gets_a_4xx(client):
    run_all(
        (f"POST {url} {json.dumps(body)[:300]}", partial(post, client, url, json.dumps(body)))
        for url, example in examples("application/json")
        for body in broken(example)
    )


CSV_TEXT = st.text(alphabet=',"\r\n 1.e-anix\x00', max_size=60)


def test_examples_randomly_broken_get_a_4xx(client):
    """JSON examples with places replaced or removed at random (Python's json.dumps
    sends NaN and Infinity as such), and CSV text with and without the example's header."""
    json_checks = (
        (f"POST {url}", fuzzed(mutated(example).map(json.dumps), partial(post, client, url)))
        for url, example in examples("application/json")
    )
    csv_checks = (
        (
            f"POST {url} (CSV)",
            fuzzed(
                CSV_TEXT | CSV_TEXT.map(example.splitlines(keepends=True)[0].__add__),
                partial(post, client, url, content_type="text/csv"),
            ),
        )
        for url, example in examples("text/csv")
    )
    run_all([*json_checks, *csv_checks])
