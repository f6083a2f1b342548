"""The analyst page (GET /explain, service/static/explain.html) in a real headless browser: Debian's chromium driven
by Playwright against a real gateway process (the shipped student, an API key configured, no teacher). What the page
shows must be what /v1/explain answers; the key stays in the tab (sessionStorage), never in the URL; a wrong key, a
missing teacher and a rejected field are readable messages. The screenshot goes to the test's temporary folder, or
to reports/analyst-page/ with RELEVANCE_UPDATE_SCREENSHOTS=1 (the committed one)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import REPO
from tests.service.gateway_process import GatewayProcess, local_settings

KEY = "k1"
PAGE = REPO / "service" / "static" / "explain.html"
SCREENSHOT = REPO / "reports" / "analyst-page" / "explain.png"
QUERY = "simpson angle bracket"
TITLE = "BEHR Premium 1 gal. Deep Base Solid Color Concrete Stain"
BRAND = "Simpson Strong-Tie"  # the mismatching brand of the mocked answers


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = local_settings(REPO / "model_repository", tmp_path_factory.mktemp("index"), api_keys=f'["{KEY}"]')
    with GatewayProcess(settings) as process:
        yield process.url


def chromium() -> str:
    """Debian's chromium, which Playwright drives (no browser download): missing is a failure, not a skip."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: the analyst page is tested in a real headless browser; install "
                    "Debian's package with `apt-get install chromium` (.ci/run does)", pytrace=False)
    return path


def test_chromium_is_installed() -> None:
    """The setup failure of every browser test below, as one failed test that names the package."""
    chromium()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab (its own sessionStorage) at ~1200 px wide; fails the test on a script error or a CSP report."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" and
           "Content Security Policy" in msg.text else None)
    yield tab
    context.close()
    assert not problems, problems


def explain(page: Any, gateway: str, query: str, title: str, key: str | None = KEY, teacher: bool = False,
            item_id: str = "") -> None:
    """Open the page, type the pair (and the key), click Explain and wait for the result or the error."""
    page.goto(f"{gateway}/explain")
    if key is not None:
        page.fill("#api-key", key)
    page.fill("#query", query)
    page.fill("#title", title)
    page.fill("#item-id", item_id)
    page.set_checked("#teacher", teacher)
    page.click("#explain")
    page.wait_for_selector("body[data-state=done], body[data-state=error]", timeout=10_000)  # no eval: the CSP


def api_explain(gateway: str, query: str, title: str) -> dict[str, Any]:
    response = httpx.post(f"{gateway}/v1/explain", headers={"X-API-Key": KEY}, timeout=10,
                          json={"query": query, "title": title, "counterfactual": True})
    assert response.status_code == 200, response.text
    return response.json()


def marked(page: Any, selector: str) -> list[str]:
    """Per character (code point) of the element's text: the class of the <mark> around it, or ''."""
    return page.eval_on_selector(selector, """(element) => {
        const out = [];
        for (const child of element.childNodes) {
            const n = Array.from(child.textContent).length;
            for (let i = 0; i < n; i++) out.push(child.nodeName === "MARK" ? child.className : "");
        }
        return out;
    }""")


def expected_marks(text: str, green: Sequence[Sequence[int]], red: Sequence[Sequence[int]],
                   amber: Sequence[Sequence[int]] = ()) -> list[str]:
    """What :func:`marked` should read: ok (green), weak (amber) and bad (red) spans, the later winning overlaps."""
    out = [""] * len(text)
    for cls, spans in (("ok", green), ("weak", amber), ("bad", red)):
        for start, end in spans:
            out[start:end] = [cls] * (end - start)
    return out


def test_the_page_is_served_without_a_key_and_stays_out_of_the_schema(gateway: str) -> None:
    response = httpx.get(f"{gateway}/explain", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert response.text == PAGE.read_text(encoding="utf-8")
    assert "/explain" not in httpx.get(f"{gateway}/openapi.json", timeout=10).json()["paths"]
    assert httpx.post(f"{gateway}/v1/explain", json={"query": QUERY, "title": TITLE}, timeout=10).status_code == 401


def test_the_csp_pins_the_inline_script_and_style() -> None:
    """The page's Content-Security-Policy allows only its own inline <script> and <style>, by SHA-256: after an edit
    of either, put the hashes named here into the meta tag."""
    html = PAGE.read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", html), "the page fetches nothing from elsewhere"
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        assert len(bodies) == 1 and html.count(f"<{tag}") == 1, f"one inline {tag} element, and no other '<{tag}'"
        digest = "sha256-" + base64.b64encode(hashlib.sha256(bodies[0].encode()).digest()).decode()
        assert f"{directive} '{digest}'" in html, f"the CSP's {directive} must be '{digest}' (the inline {tag} changed)"


def test_the_page_shows_what_the_api_answers(page: Any, gateway: str) -> None:
    explain(page, gateway, QUERY, TITLE)
    assert page.evaluate("document.body.dataset.state") == "done", page.inner_text("#message")
    api = api_explain(gateway, QUERY, TITLE)

    assert page.inner_text("#verdict") == api["verdict"] == api["student"]["label"]
    assert float(page.inner_text("#score")) == pytest.approx(api["student"]["score"], abs=0.005)  # 2 decimals
    assert float(page.get_attribute("#score", "data-score")) == pytest.approx(api["student"]["score"], abs=1e-9)

    # the title with the student's matched spans: green where a met requirement matched or an aspect matches, red
    # where an aspect mismatches (red wins an overlap), nothing elsewhere
    assert page.inner_text("#title-view") == TITLE
    green = [span for r in api["requirements"] if r["status"] == "met" for span in r["title_spans"]]
    green += [a["item_span"] for a in api["aspects"] if a["item_span"] and a["matches"] is True]
    red = [a["item_span"] for a in api["aspects"] if a["item_span"] and a["matches"] is False]
    assert api["verdict"] == "Bad" and red, "the shipped student says Bad and names the mismatching title values"
    assert marked(page, "#title-view") == expected_marks(TITLE, green, red)
    assert page.locator("#title-view mark.bad").count() >= 1
    # the query with its requirements: met green, weak amber, unmet red
    assert page.inner_text("#query-view") == QUERY
    spans = {s: [r["span"] for r in api["requirements"] if r["status"] == s] for s in ("met", "unmet", "weak")}
    assert marked(page, "#query-view") == expected_marks(QUERY, spans["met"], spans["unmet"], spans["weak"])

    assert page.inner_text("#cot") == api["cot"]
    rows = page.locator("#requirements tbody tr")
    assert rows.count() == len(api["requirements"])
    for row, requirement in zip(rows.all(), api["requirements"], strict=True):
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == requirement["aspect"] and cells[1] == requirement["value"]
        assert cells[2].strip() == f"{requirement['support']:.2f}" and cells[3] == requirement["status"]

    implied = api["counterfactual"]["implied"]
    edits = page.locator("#counterfactual li")
    assert edits.count() == 1 + len(api["counterfactual"]["each"])
    first = edits.first.inner_text()
    assert ("without " if implied["edit"] == "remove" else "with ") + implied["values"][0] in first
    assert f"{implied['score']:.2f}" in first and implied["title"] in first

    model_version = httpx.get(f"{gateway}/readyz", timeout=10).json()["model_version"]
    assert page.inner_text("#model-version") == f"model {model_version}" == f"model {api['student']['model_version']}"

    # the key stays in this tab (sessionStorage), never in the URL or localStorage; the pair does go in the link
    assert "query=" in page.url and KEY not in page.url
    page.reload()
    assert page.input_value("#api-key") == KEY
    assert page.input_value("#query") == QUERY and page.input_value("#title") == TITLE
    assert page.evaluate("sessionStorage.getItem('relevance.apiKey')") == KEY
    assert page.evaluate("localStorage.length") == 0
    assert KEY not in page.url


def test_a_shared_link_prefills_the_pair_but_never_the_key(page: Any, gateway: str) -> None:
    page.goto(f"{gateway}/explain#query={quote('angle bracket')}&title={quote('Simpson 12-Gauge & Angle')}&key=k1")
    assert page.input_value("#query") == "angle bracket"
    assert page.input_value("#title") == "Simpson 12-Gauge & Angle"
    assert page.input_value("#api-key") == ""


def test_a_wrong_or_missing_key_asks_for_the_key(page: Any, gateway: str) -> None:
    explain(page, gateway, QUERY, TITLE, key="wrong")
    assert page.evaluate("document.body.dataset.state") == "error"
    message = page.inner_text("#message")
    assert "API key not accepted (403)" in message and "enter it again" in message
    assert page.get_attribute("#api-key", "aria-invalid") == "true"
    assert not page.is_visible("#result")

    page.evaluate("sessionStorage.clear()")
    explain(page, gateway, QUERY, TITLE, key=None)
    assert page.input_value("#api-key") == ""
    assert "API key needed (401)" in page.inner_text("#message")


def test_a_rejected_field_is_named_and_untrusted_titles_stay_text(page: Any, gateway: str) -> None:
    explain(page, gateway, QUERY, " ")
    assert page.evaluate("document.body.dataset.state") == "error"
    assert "(422)" in page.inner_text("#message") and "title:" in page.inner_text("#message")
    assert page.get_attribute("#title", "aria-invalid") == "true"
    explain(page, gateway, QUERY, "", item_id="no-such-item")  # no catalogue: a 404 naming item_id
    assert "Not found (404)" in page.inner_text("#message") and "item_id:" in page.inner_text("#message")
    assert page.get_attribute("#item-id", "aria-invalid") == "true"

    hostile = '<img src=x onerror="window.pwned=1">Angle <b>bracket</b>'
    explain(page, gateway, "angle bracket", hostile)
    assert page.evaluate("document.body.dataset.state") == "done"
    assert page.inner_text("#title-view") == hostile
    assert page.locator("#title-view img, #title-view b, #counterfactual img").count() == 0
    assert page.evaluate("window.pwned") is None


def test_the_teacher_checkbox_without_a_teacher_is_a_readable_note(page: Any, gateway: str, tmp_path: Path) -> None:
    explain(page, gateway, QUERY, TITLE, teacher=True)
    page.wait_for_selector("#teacher-result[data-state=note]", timeout=10_000)
    assert page.evaluate("document.body.dataset.state") == "done"  # the student's explanation is unaffected
    assert page.is_hidden("#message")
    assert "No teacher configured" in page.inner_text("#teacher-note")
    assert page.is_hidden("#teacher-body")

    screenshot = SCREENSHOT if os.environ.get("RELEVANCE_UPDATE_SCREENSHOTS") == "1" else tmp_path / "explain.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def mocked_result(mode: str, query: str, title: str) -> dict[str, Any]:
    """A valid ExplainResult in states the pairs above do not reach: a Bad verdict with a mismatch, an unmet
    requirement and an `add` edit (decision), or a teacher that disagrees with the student. Offsets are code
    points."""
    from service.explain import ExplainResult

    simpson = [title.index(BRAND), title.index(BRAND) + len(BRAND)]
    angle = [title.index("Angle"), title.index("Angle") + len("Angle")]
    student = {"model_version": "colbert:7", "score": 0.1034, "label": "Bad", "source": "title", "evidence": []}
    common = {"query": query, "title": title, "note": None, "parse_ok": True, "parse_errors": [],
              "parse_warnings": [], "latency_ms": 12.5, "student": student}
    if mode == "teacher":
        result = {**common, "mode": "teacher", "verdict": "Good", "writer": "teacher", "judgement": "Good",
                  "cot": "Thinking: query has brand requirement: everbilt; ... Final judgment: Good",
                  "reason": None, "aspects": [], "score": 0.7214, "p_good": 0.81, "model": "ellm-rele",
                  "disagreement": True}
    else:
        result = {**common, "mode": "decision", "verdict": "Bad", "writer": "rules", "judgement": "Bad",
                  "cot": "Thinking: query has brand requirement: everbilt; ad in brand: Simpson Strong-Tie, mismatch. "
                         "Final judgment: Bad, brand mismatch", "reason": "brand mismatch", "score": 0.1034,
                  "model": "rules", "disagreement": False,
                  "aspects": [{"aspect": "brand", "query_value": "everbilt", "query_span": [0, 8],
                               "item_value": BRAND, "item_span": simpson, "matches": False},
                              {"aspect": "product", "query_value": "angle bracket", "query_span": [9, 22],
                               "item_value": "Angle", "item_span": angle, "matches": True}],
                  "requirements": [{"aspect": "brand", "value": "everbilt", "span": [0, 8], "support": 0.21,
                                    "status": "unmet", "title_spans": []},
                                   {"aspect": "product", "value": "angle bracket", "span": [9, 22],
                                    "support": 0.77, "status": "met", "title_spans": [angle]}],
                  "counterfactual": {"implied": {"edit": "add", "values": ["everbilt"], "title": f"everbilt {title}",
                                                 "score": 0.9134, "delta": 0.81},
                                     "each": [{"edit": "remove", "values": [BRAND], "title": "🔥 12-Gauge Angle",
                                               "score": 0.3129, "delta": -0.6605}]}}
    return ExplainResult.model_validate(result).model_dump(mode="json")


def test_a_bad_verdict_a_mismatch_and_a_disagreeing_teacher_render(page: Any, gateway: str) -> None:
    """The states the pairs above do not reach, from answers of the API's own schema: red spans (at code-point
    offsets past an emoji), an unmet requirement, an `add` edit, a teacher that disagrees."""
    query, title = "everbilt angle bracket", "🔥 Simpson Strong-Tie 12-Gauge Angle"
    requests: list[tuple[str | None, dict[str, Any]]] = []

    def answer(route: Any) -> None:
        body = route.request.post_data_json
        requests.append((route.request.headers.get("x-api-key"), body))
        route.fulfill(json=mocked_result(body["mode"], body["query"], body["title"]))

    page.route("**/v1/explain", answer)
    explain(page, gateway, query, title, teacher=True)
    page.wait_for_selector("#teacher-result[data-state=done]", timeout=10_000)
    assert sorted((key, body["mode"], body["counterfactual"]) for key, body in requests) == [
        (KEY, "decision", True), (KEY, "teacher", False)]
    api = mocked_result("decision", query, title)

    assert page.inner_text("#verdict") == "Bad" and page.get_attribute("#verdict", "class") == "verdict bad"
    assert page.inner_text("#score") == "0.10"
    green = [span for r in api["requirements"] if r["status"] == "met" for span in r["title_spans"]]
    assert marked(page, "#title-view") == expected_marks(title, green, [api["aspects"][0]["item_span"]])
    assert page.locator("#title-view mark.bad").all_inner_texts() == [BRAND]
    assert marked(page, "#query-view") == expected_marks(query, [[9, 22]], [[0, 8]])
    assert page.locator("#requirements tbody tr").nth(0).locator("td").all_inner_texts()[3] == "unmet"
    edits = page.locator("#counterfactual li").all_inner_texts()
    assert "with everbilt added to the title: 0.91 (+0.81)" in edits[0]
    assert f"without {BRAND}: 0.31 (\N{MINUS SIGN}0.66)" in edits[1]

    assert page.inner_text("#teacher-judgement") == "Good" and page.inner_text("#teacher-score") == "0.72"
    assert page.inner_text("#teacher-agreement") == "disagrees with the student (Bad)"
    assert page.inner_text("#teacher-cot").startswith("Thinking: query has brand requirement: everbilt")
    assert page.is_hidden("#teacher-note")


def test_the_api_docs_render_without_internet(browser: Any, gateway: str) -> None:
    """Swagger UI and ReDoc load their scripts, styles and the schema from the gateway itself: with every other host
    unreachable, both pages render the API's operations (ReDoc's bundle still asks the internet for its logo: an
    image, which the page does without)."""
    context = browser.new_context()
    outside: list[str] = []

    def only_the_gateway(route: Any) -> None:
        if route.request.url.startswith(gateway):
            route.continue_()
        else:
            if route.request.resource_type != "image":
                outside.append(f"{route.request.resource_type} {route.request.url}")
            route.abort()

    context.route("**/*", only_the_gateway)
    tab = context.new_page()
    tab.goto(f"{gateway}/docs")
    tab.wait_for_selector(".opblock", timeout=30_000)
    assert tab.locator(".opblock").count() >= 5
    assert "/v1/score" in tab.content()
    tab.goto(f"{gateway}/redoc")
    tab.wait_for_selector("text=\"/v1/score\"", timeout=30_000)
    context.close()
    assert outside == [], outside
