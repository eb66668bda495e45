"""`/docs` (issue 24): every operation of /openapi.json carries a request example (its body's, when it takes one)
and an answer example for each documented answer, and every JSON example validates against its own schema; the
page, in a real browser, shows them and sends a call with a pasted key, showing the server's answer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, async_playwright, expect
from support import CN_TOKEN, json_of

from jimeng_server.api.openapi_examples import example

Client = TestClient[Any, Any]
CHROMIUM = "/usr/bin/chromium"
expect.set_options(timeout=15_000)


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]


def check(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> None:
    """`value` is valid for `schema` ($refs into the document's components)."""
    root = {**schema, "components": doc["components"]}
    errors = list(jsonschema.Draft202012Validator(root).iter_errors(value))
    assert not errors, f"{where}: {[e.message for e in errors][:3]}"


async def test_every_operation_has_examples_that_fit_their_schemas(client: Client) -> None:
    resp = await client.get("/openapi.json")
    doc = await json_of(resp)
    ops = operations(doc)
    assert len(ops) >= 30
    for path, method, op in ops:
        where = f"{method.upper()} {path}"
        for media_type, media in op.get("requestBody", {}).get("content", {}).items():
            assert "example" in media, f"{where}: no request example for {media_type}"
            if media_type == "application/json":
                check(doc, media["schema"], media["example"], f"{where} request")
        answers = [(s, a) for s, a in op["responses"].items() if s != "default"]
        assert answers, f"{where}: no answer documented"
        for status, answer in answers:
            for media_type, media in answer.get("content", {}).items():
                assert "example" in media, f"{where} {status}: no answer example for {media_type}"
                if media_type == "application/json":
                    check(doc, media["schema"], media["example"], f"{where} {status}")
        error = op["responses"]["default"]["content"]["application/json"]["example"]
        assert set(error["error"]) >= {"message", "type", "code"}


async def test_the_image_request_example_is_accepted_by_the_server(client: Client) -> None:
    """The example of the most used operation works as it is (here against the simulator)."""
    doc = await json_of(await client.get("/openapi.json"))
    body = doc["paths"]["/v1/async/images/generations"]["post"]["requestBody"]["content"]["application/json"]
    resp = await client.post(
        "/v1/async/images/generations", json=body["example"], headers={"Authorization": f"Bearer {CN_TOKEN}"}
    )
    assert resp.status == 200, await json_of(resp)


def test_examples_follow_refs_and_stop_on_cycles() -> None:
    components = {"Node": {"type": "object", "properties": {"name": {"type": "string"}, "next": {"$ref": "#/x/Node"}}}}
    value = example({"$ref": "#/components/schemas/Node"}, components)
    assert value == {"name": "team-a", "next": {}}
    assert example({"type": ["string", "null"], "enum": ["a", "b"]}, {}) == "a"
    assert example({"type": "object", "properties": {"a": {"type": "integer"}}}, {}, request=True) == {"a": 1}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        assert not os.environ.get("CI"), "install Debian's chromium (apt-get install -y chromium), as .ci/run does"
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (apt-get install -y chromium) to run this test")
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        await chromium.close()


async def test_the_docs_page_shows_examples_and_sends_a_call_with_a_pasted_key(
    browser: Browser, client: Client
) -> None:
    doc = await json_of(await client.get("/openapi.json"))
    page = await browser.new_page()
    await page.goto(str(client.make_url("/docs")))
    ops = page.locator("details.op")
    await expect(ops).to_have_count(len(operations(doc)))
    await expect(page.locator("details.op pre.request-example")).to_have_count(len(operations(doc)))
    await page.fill("#api-key", CN_TOKEN)

    submit = page.locator("details.op[data-op='POST /v1/async/images/generations']")
    await submit.locator("> summary").click()
    await expect(submit.locator("pre.request-example")).to_contain_text('"prompt": "a cat in the snow"')
    await expect(submit.locator("pre.answer-example").first).to_contain_text("history_id")
    await submit.locator("form.try button").click()
    answer = submit.locator("pre.answer")
    await expect(answer).to_have_attribute("data-status", "200")
    text = await answer.text_content() or ""
    history_id = text.split('"history_id": "', 1)[1].split('"', 1)[0]

    query = page.locator("details.op[data-op='GET /v1/async/tasks/{history_id}']")
    await query.locator("> summary").click()
    await query.locator("input[name=history_id]").fill(history_id)
    await query.locator("form.try button").click()
    await expect(query.locator("pre.answer")).to_have_attribute("data-status", "200")
    await expect(query.locator("pre.answer")).to_contain_text(history_id)

    # Without the key the same call shows the server's error answer.
    await page.fill("#api-key", "")
    await query.locator("form.try button").click()
    await expect(query.locator("pre.answer")).to_have_attribute("data-status", "401")
    await expect(query.locator("pre.answer")).to_contain_text('"code"')
    await page.close()
