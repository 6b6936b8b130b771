"""Listings (GET /tasks, GET /executions) give args, kwargs and result cut to
a 2 KiB preview of their JSON text, named in ``truncated``; GET /tasks/{id}
and GET /executions/{id} give them whole."""
import json

from test_api import create, get_task, report, work

PREVIEW = 2048


def text_of(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_big_values_are_previews_in_listings_and_whole_in_details(api):
    big_args = ["q" * 100_000]
    big_kwargs = {"k": "é" * 5000}  # two bytes a character: cut on a character
    task = create(api, args=big_args, kwargs=big_kwargs)
    small = create(api, args=[1, "two"], kwargs={"a": None})
    [run] = work(api, "a")
    assert run["args"] == big_args  # the agent gets them whole
    result = {"rows": list(range(2000))}
    report(api, "a", run["id"], result=result)

    listed = {t["id"]: t for t in api.call("GET", "/tasks").json["tasks"]}
    item = listed[task["id"]]
    assert sorted(item["truncated"]) == ["args", "kwargs", "result"]
    for name, value in (("args", big_args), ("kwargs", big_kwargs), ("result", result)):
        preview = item[name]
        assert isinstance(preview, str) and len(preview.encode()) <= PREVIEW
        assert text_of(value).startswith(preview) and len(preview.encode()) > PREVIEW - 4
    assert listed[small["id"]]["truncated"] == []
    assert listed[small["id"]]["args"] == [1, "two"]
    assert listed[small["id"]]["kwargs"] == {"a": None}

    whole = get_task(api, task["id"])
    assert whole["args"] == big_args and whole["kwargs"] == big_kwargs
    assert whole["result"] == result and "truncated" not in whole
    # the runs a task's detail lists are previews too; the run's own route is whole
    assert whole["executions"][0]["truncated"] == ["result"]
    [listed_run] = api.call("GET", "/executions").json["executions"]
    assert listed_run["truncated"] == ["result"] and text_of(result).startswith(
        listed_run["result"])
    one = api.call("GET", "/executions/%d" % run["id"]).json
    assert one["result"] == result and "truncated" not in one


def test_a_value_of_exactly_the_preview_size_is_whole(api):
    exact = ["x" * (PREVIEW - 4)]  # ["xx...x"]: 2048 bytes of JSON
    assert len(text_of(exact)) == PREVIEW
    create(api, args=exact)
    create(api, args=["x" * (PREVIEW - 3)])
    over, fits = api.call("GET", "/tasks").json["tasks"]
    assert fits["args"] == exact and fits["truncated"] == []
    assert over["truncated"] == ["args"] and isinstance(over["args"], str)


def test_search_and_filters_give_previews_too(api):
    create(api, args=["needle" + "z" * 10_000])
    for query in ("q=needle", "q=ne", "status=Created", "plugin=echo"):
        [item] = api.call("GET", "/tasks", query_string=query).json["tasks"]
        assert item["truncated"] == ["args"], query
        assert item["args"].startswith('["needle') and len(item["args"]) == PREVIEW

