"""POST /api/v1/features/online on a real server on 127.0.0.1: the same answer as
get_online_features in-process, and a 400 naming the field for every malformed body."""

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from appliance.core import Appliance
from appliance.features.online import to_json
from tests.conftest import ACTOR, Server

NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
PATH = "/api/v1/features/online"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A home with view loans materialized (c2's row past the 30-day TTL), served; and
    the in-process answer for c1, c2 and an unknown entity, taken before the server
    opened the stores. One server for the module: its tests only read."""
    home = tmp_path_factory.mktemp("online-http") / "home"
    app = Appliance.open({"home": str(home)})
    app.init(ACTOR)
    rows = pa.table({
        "customer_id": ["c1", "c1", "c2", "c3"],
        "event_time": pa.array([NOW - timedelta(days=d) for d in (3, 1, 40, 2)],
                               pa.timestamp("us")),
        "income": [1000.0, 1500.5, 2000.0, float("nan")],
        "segment": ["a", "b", "c", "d"],
    })  # fmt: skip
    app.ingestion.ingest(rows, "loans", "customer_id", "event_time", ACTOR)
    app.views.define("loans", "loans", ACTOR, ttl=timedelta(days=30))
    app.online.materialize("loans", ACTOR)
    entities = [{"customer_id": k} for k in ("c1", "c2", "nobody", "c3")]
    expected = to_json(
        app.online.get_online_features(["loans:income", "loans:segment"], entities, ACTOR)
    )
    app.close()
    server = Server(home).wait()
    yield server, entities, expected
    server.stop()


def test_the_route_answers_as_the_python_api(served):
    server, entities, expected = served
    status, body = server.request(
        "POST", PATH, {"features": ["loans:income", "loans:segment"], "entities": entities}
    )
    assert status == 200, body
    assert body == expected
    c1, c2, nobody, c3 = body["results"]
    assert c1["values"] == {"income": 1500.5, "segment": "b"}
    assert c1["statuses"] == {"income": "PRESENT", "segment": "PRESENT"}
    assert c2["values"] == {"income": None, "segment": None}
    assert c2["statuses"] == {"income": "OUTSIDE_MAX_AGE", "segment": "OUTSIDE_MAX_AGE"}
    assert nobody["statuses"] == {"income": "NOT_FOUND", "segment": "NOT_FOUND"}
    assert nobody["event_times"] == {"loans@1": None}
    assert c3["values"] == {"income": None, "segment": "d"}  # NaN goes out as null
    full = server.request("POST", PATH, {"features": ["loans:*"], "entities": entities[:1],
                                         "full_names": True})  # fmt: skip
    assert full[0] == 200
    assert full[1]["features"] == ["loans__income", "loans__segment"]


@pytest.mark.parametrize(
    "body,message",
    [
        ({"entities": [{"customer_id": "c1"}]}, 'field "features"'),
        ({"features": [], "entities": []}, 'field "features"'),
        ({"features": "loans:income", "entities": []}, 'field "features"'),
        ({"features": [1], "entities": []}, 'field "features[0]"'),
        ({"features": ["loans:income"]}, 'field "entities"'),
        ({"features": ["loans:income"], "entities": {"customer_id": "c1"}}, 'field "entities"'),
        ({"features": ["loans:income"], "entities": ["c1"]}, 'field "entities[0]"'),
        ({"features": ["loans:income"], "entities": [{"customer_id": "c1"}], "full_names": 1},
         'field "full_names"'),
        ({"features": ["loans:income"], "entities": [{"customer_id": "c1"}, {"id": "c2"}]},
         "entities[1]: missing key 'customer_id'"),
        ({"features": ["loans:income"], "entities": [{"customer_id": {"a": 1}}]},
         "entities[0]: key 'customer_id' must be a string or a number"),
        ({"features": ["loans:nope"], "entities": [{"customer_id": "c1"}]},
         "view loans@1 has no column 'nope'"),
        ({"features": ["ghost:x"], "entities": [{"customer_id": "c1"}]}, "ghost"),
        ({"features": ["loans"], "entities": [{"customer_id": "c1"}]},
         "'loans' is not a feature reference"),
        ([1, 2], "expected a JSON object"),
    ],
)  # fmt: skip
def test_malformed_bodies_are_400_naming_the_field(served, body, message):
    server, entities, expected = served
    status, answer = server.request("POST", PATH, body)
    assert status == 400, answer
    assert message in answer["error"]["message"]


def test_not_json_is_400(served):
    server, entities, expected = served
    req = urllib.request.Request(server.url + PATH, data=b"{features:", method="POST",
                                 headers=server.headers())  # fmt: skip
    req.add_header("Content-Type", "application/json")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=30)
    assert exc.value.code == 400
    assert "expected JSON" in json.loads(exc.value.read())["error"]["message"]
