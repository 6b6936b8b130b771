"""GET /openapi.json: the routes the app serves and the routes it documents are
the same set, and the document is valid OpenAPI.  (The fuzzer in
tests/test_fuzz.py checks the server keeps what it promises.)"""
import falcon
import pytest

from octopus.server import openapi

ERROR = {"$ref": "#/components/schemas/Error"}
METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


def served_routes(app):
    """``{path: {methods}}`` from falcon's router, with each resource's own
    responders only (falcon adds OPTIONS and 405 responders by itself)."""
    routes = {}
    nodes = list(app._router._roots)
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children)
        if node.resource is None:
            continue
        methods = {m.lower() for m in falcon.routing.map_http_methods(node.resource)}
        routes[openapi.falcon_path(node.uri_template)] = methods
    # A static route is not in the router: falcon matches its prefix by itself
    # and serves GET and HEAD (the document says /static/{path}).
    for route, _, is_sink in app._static_routes:
        assert not is_sink
        routes[route._prefix.rstrip("/") + "/{path}"] = {"get", "head"}
    return routes


def documented_routes(doc):
    return {p: {m for m in ops if m in METHODS} for p, ops in doc["paths"].items()}


def test_every_served_route_is_documented_and_nothing_else(api):
    app = api.client.app
    served, documented = served_routes(app), documented_routes(openapi.document())
    assert "/tasks/{task_id}" in served and "/executions/{run_id}" in served
    missing = {p: sorted(m) for p, m in served.items() if documented.get(p) != m}
    extra = {p: sorted(m) for p, m in documented.items() if served.get(p) != m}
    assert not missing and not extra, (
        "routes and octopus/server/openapi.py differ: served %s, documented %s"
        % (missing, extra))


def test_the_document_is_valid_openapi():
    from openapi_spec_validator import validate

    validate(openapi.document())


def test_openapi_json_is_public_and_is_the_document(api):
    res = api.call("GET", "/openapi.json", token=None)
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("application/json")
    assert res.json == openapi.document()
    assert res.json["openapi"].startswith("3.0")


def test_every_operation_says_its_role_and_its_error_shape():
    doc = openapi.document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["x-role"] in openapi.SECURITY, (method, path)
            assert op["security"] == openapi.SECURITY[op["x-role"]]
            for code, reply in op["responses"].items():
                if code.startswith("4"):
                    schema = reply["content"]["application/json"]["schema"]
                    # 409 on /agent/results: the acks, plus the error
                    assert ERROR in (schema, *schema.get("allOf", ())), (method, path, code)
            if op["x-role"] != "public":
                assert {"401", "403"} <= set(op["responses"]), (method, path)


@pytest.mark.parametrize("path, method, role", [
    ("/tasks", "post", "admin"), ("/heartbeat", "post", "agent"),
    ("/plugins/{name}", "get", "agent"), ("/plugins/{name}", "put", "admin"),
    ("/metrics", "get", "metrics"), ("/health", "get", "public"),
])
def test_roles_match_what_the_server_enforces(api, path, method, role):
    """The document's role is the resource's ``auth``, checked on a few routes
    of each kind; the 401/403 tests in test_api.py cover the enforcement."""
    assert openapi.document()["paths"][path][method]["x-role"] == role
    from octopus.server.auth import ADMIN
    resource = api.client.app._router.find(path.replace("{name}", "echo"))[0]
    wanted = getattr(resource, "auth", ADMIN)
    if isinstance(wanted, dict):
        wanted = wanted.get(method.upper(), ADMIN)
    assert wanted == role


def test_limits_in_the_document_come_from_the_code():
    from octopus.server import agents, validate

    doc = openapi.document()
    task = doc["components"]["schemas"]["TaskInput"]["properties"]
    assert task["max_retries"]["maximum"] == validate.MAX_RETRIES
    assert task["timeout"]["maximum"] == validate.MAX_TIMEOUT
    assert set(task) == set(validate.TASK_FIELDS)
    work = doc["components"]["schemas"]["WorkRequest"]["properties"]
    assert work["capacity"]["maximum"] == agents.MAX_CAPACITY


def test_every_method_the_document_does_not_list_is_405(api):
    """With the admin token (without one, a token-needing route says 401 first):
    the methods a path lacks are refused with Allow, the static files included
    (BUG, fixed: falcon's static route served the file to POST, PUT, DELETE)."""
    concrete = {"{task_id}": "0" * 32, "{run_id}": "1", "{name}": "echo",
                "{path}": "app.js"}
    for path, ops in openapi.document()["paths"].items():
        url = path
        for template, value in concrete.items():
            url = url.replace(template, value)
        for method in set(METHODS) - set(ops) - {"options"}:
            res = api.call(method.upper(), url)
            assert res.status_code == 405, (method, url, res.status_code)
            if method != "head":  # a HEAD reply has no body
                assert res.json["error"]["field"] is None
            assert res.headers.get("allow"), (method, url)
