"""Explanations of the served decision (mode decision) with the shipped student (`model_repository`, colbert v2)
through the real gateway app: the verdict and score are /v1/score's, the CoT reaches that verdict and names an
unmet requirement exactly when it is Bad, every value is a span of the pair, items named by id are scored from the
store, a page keeps its order, and bad input is a clear 4xx."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relevance_core.cot import parse
from relevance_core.data import load_pairs
from service.app import create_app
from service.core.runtime import ColBERTModel, load_runtime_model
from service.explain.decision import Edit, implied_edit
from service.explain.reading import runs, words
from service.settings import Settings
from service.store.codec import TokenCodec
from service.store.local import LocalItemStore
from tests.conftest import REPO

REPOSITORY = REPO / "model_repository"
QUERY, TITLE = "simpson angle bracket", "BEHR Premium 1 gal. Deep Base Solid Color Concrete Stain"
STORED = {"100001": "Simpson Strong-Tie 12-Gauge Angle", "100002": TITLE}


@pytest.fixture(scope="module")
def titles(vendored_pairs: Path) -> list[str]:
    return sorted({p.product_title for p in load_pairs(vendored_pairs)})


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory, titles: list[str]) -> Path:
    """The vendored data's titles as a catalogue TSV (the brand lexicon), with the stored items' ids."""
    path = tmp_path_factory.mktemp("catalogue") / "catalogue.tsv"
    rows = [f"{uid}\t{title}" for uid, title in STORED.items()]
    rows += [f"p{k}\t{t}" for k, t in enumerate(titles) if t not in STORED.values()]
    path.write_text("product_uid\tproduct_title\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, catalogue: Path) -> Iterator[TestClient]:
    """The gateway on the shipped v2 with a local index of STORED (100002 stored under another title than the
    catalogue's would be: it is stored as TITLE, and the catalogue says so too) and no teacher."""
    model = load_runtime_model(REPOSITORY, version=2)
    assert isinstance(model, ColBERTModel)
    root = tmp_path_factory.mktemp("index")
    store = LocalItemStore(root, model.version.label, TokenCodec.float32(model.meta.dim))
    store.put_many(dict(zip(STORED, model.item_tokens(list(STORED.values())), strict=True)))
    store.put_many({"stale": model.item_tokens(["Some Other Product Title"])[0]})
    store.flush()
    store.activate()
    store.close()
    settings = Settings(model_repository=REPOSITORY, model_version=2, store="local",  # type: ignore[call-arg]
                        store_dir=root, grpc_port=None, teacher_local=False, catalog=catalogue)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _score(client: TestClient, query: str, item: dict[str, str]) -> dict:
    response = client.post("/v1/score", json={"query": query, "items": [item]})
    assert response.status_code == 200, response.text
    return response.json()["scores"][0]


def _explain(client: TestClient, **body: object) -> dict:
    response = client.post("/v1/explain", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _names_an_unmet_requirement(result: dict) -> bool:
    unmet_aspects = {a["aspect"] for a in result["aspects"] if a["matches"] is False}
    note = result["note"] or ""
    required = [(a["aspect"], a["query_value"]) for a in result["aspects"] if a["query_value"]]
    return any(aspect in unmet_aspects or f"requirement {value} is not met" in note for aspect, value in required)


def test_the_pair_analysts_saw_contradicted_is_explained_as_the_student_decided(client: TestClient) -> None:
    result = _explain(client, query=QUERY, title=TITLE, counterfactual=True)
    served = _score(client, QUERY, {"id": "new", "title": TITLE})
    assert (result["mode"], result["writer"], result["verdict"]) == ("decision", "rules", "Bad")
    assert result["score"] == pytest.approx(served["score"], abs=1e-9) and served["label"] == "Bad"
    assert result["student"]["score"] == result["score"] and result["disagreement"] is False
    assert result["judgement"] == "Bad" and result["cot"].endswith("Final judgment: Bad-brand mismatch")
    unmet = {(r["aspect"], r["value"]) for r in result["requirements"] if r["status"] == "unmet"}
    assert unmet == {("brand", "simpson"), ("product", "angle bracket")}
    assert "ad in product: Concrete Stain, mismatches" in result["cot"] and _names_an_unmet_requirement(result)
    implied = result["counterfactual"]["implied"]
    assert implied["edit"] == "add" and implied["values"] == ["simpson", "angle bracket"]
    assert implied["title"] == f"simpson angle bracket {TITLE}" and implied["score"] >= result["score"] + 0.5
    assert [e["values"] for e in result["counterfactual"]["each"]] == [["simpson"], ["angle bracket"]]


def test_a_good_verdict_cites_the_matches_and_removing_them_drops_the_score(client: TestClient) -> None:
    result = _explain(client, query=QUERY, item_id="100001", counterfactual=True)
    assert (result["verdict"], result["item_id"], result["student"]["source"]) == ("Good", "100001", "store")
    assert result["score"] == pytest.approx(_score(client, QUERY, {"id": "100001"})["score"], abs=1e-9)
    assert not any(a["matches"] is False for a in result["aspects"])
    cited = [a["item_value"] for a in result["aspects"] if a["matches"]]
    assert "Simpson" in cited and "Angle" in cited
    implied = result["counterfactual"]["implied"]
    assert implied["edit"] == "remove" and implied["score"] <= result["score"] - 0.05
    for value in implied["values"]:
        assert value.lower() not in implied["title"].lower()


def test_an_item_stored_under_another_title_is_explained_from_the_title_given(client: TestClient) -> None:
    result = _explain(client, query=QUERY, item_id="stale", title=STORED["100001"])
    assert result["student"]["source"] == "title" and result["title"] == STORED["100001"]
    assert result["score"] == pytest.approx(_score(client, QUERY, {"id": "x", "title": STORED["100001"]})["score"],
                                            abs=1e-9)


WORDS = st.sampled_from(["angle", "bracket", "simpson", "stain", "deck", "white", "2", "in.", "gal", "drill",
                         "DEWALT", "20-Volt", "cordless", "faucet", "chrome", "shower", "1/2", "x", "pine", "board"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.lists(WORDS, min_size=1, max_size=5).map(" ".join),
       title=st.lists(WORDS, min_size=1, max_size=12).map(" ".join))
def test_the_verdict_is_always_the_students_and_bad_always_names_an_unmet_requirement(
        client: TestClient, query: str, title: str) -> None:
    result = _explain(client, query=query, title=title)
    served = _score(client, query, {"id": "p", "title": title})
    assert result["verdict"] == result["judgement"] == served["label"] == result["student"]["label"]
    assert result["score"] == pytest.approx(served["score"], abs=1e-9)
    parsed = parse(result["cot"], query, title)
    assert parsed.ok and parsed.explanation is not None and parsed.explanation.judgement == result["verdict"]
    assert all(r.span is not None for r in parsed.explanation.query_requirements), result["cot"]
    assert all(v.span is not None for v in parsed.explanation.item_values), result["cot"]
    if result["verdict"] == "Bad":
        assert _names_an_unmet_requirement(result), result["cot"]
        unmet = {r["value"] for r in result["requirements"] if r["status"] == "unmet"}
        assert unmet and all(v in result["cot"] for v in unmet)
    else:
        assert not any(r["status"] == "unmet" for r in result["requirements"])
        assert not any(a["matches"] is False for a in result["aspects"]), result["cot"]
        assert "not met" not in (result["note"] or "")


@pytest.mark.parametrize("query", ["\x00", "\u0301", "\u200b", "\U000e0001"])
def test_a_query_without_a_word_the_student_reads_is_explained_as_such(client: TestClient, query: str) -> None:
    """No requirement to cite (the score rests on the special tokens alone): the CoT says so, never a 500."""
    result = _explain(client, query=query, title=TITLE, counterfactual=True)
    assert result["cot"].startswith("Thinking: query has no requirements") and result["counterfactual"] is None
    assert result["verdict"] == result["judgement"] == _score(client, query, {"id": "q", "title": TITLE})["label"]
    page = client.post("/v1/explain/page", json={"query": query, "items": [{"id": "100001"}]})
    assert page.status_code == 200 and page.json()["n_explained"] == 1


def test_a_page_is_explained_in_order_with_per_item_errors(client: TestClient) -> None:
    items = [{"id": "100002"}, {"id": "unknown-id"}, {"id": "t1", "title": "Simpson Strong-Tie Angle Bracket"},
             {"id": "100001"}]
    response = client.post("/v1/explain/page", json={"query": QUERY, "items": items, "counterfactual": True})
    assert response.status_code == 200, response.text
    page = response.json()
    assert [e["id"] for e in page["items"]] == ["100002", "unknown-id", "t1", "100001"]
    assert (page["n_explained"], page["n_errors"], page["model_version"]) == (3, 1, "colbert:2")
    assert page["items"][1]["result"] is None and "unknown-id" in page["items"][1]["error"]
    for entry in (page["items"][0], page["items"][2], page["items"][3]):
        alone = _explain(client, query=QUERY, item_id=entry["id"],
                         **({"title": entry["result"]["title"]} if entry["id"] == "t1" else {}))
        assert entry["result"]["cot"] == alone["cot"] and entry["result"]["score"] == pytest.approx(alone["score"])
        assert entry["result"]["counterfactual"] is not None


@pytest.mark.parametrize(("path", "body", "status", "field"), [
    ("/v1/explain", {"query": QUERY, "title": " "}, 422, ["body", "title"]),
    ("/v1/explain", {"query": QUERY, "title": ""}, 422, ["body", "title"]),
    ("/v1/explain", {"query": QUERY}, 422, ["body", "title"]),
    ("/v1/explain", {"query": QUERY, "title": "t", "mode": "oracle"}, 422, ["body", "mode"]),
    ("/v1/explain", {"query": QUERY, "title": "t", "writer": "gpt"}, 422, ["body", "writer"]),
    ("/v1/explain", {"query": QUERY, "title": "t", "model": "qwen"}, 422, ["body", "model"]),
    ("/v1/explain", {"query": QUERY, "title": "t", "mode": "teacher", "writer": "llm"}, 422, ["body", "writer"]),
    ("/v1/explain", {"query": QUERY, "title": "t", "mode": "teacher", "counterfactual": True}, 422,
     ["body", "counterfactual"]),
    ("/v1/explain", {"query": QUERY, "item_id": "no-such-item"}, 404, None),
    ("/v1/explain", {"query": QUERY, "title": "t", "mode": "teacher"}, 503, None),
    ("/v1/explain/page", {"query": QUERY, "items": [{"id": str(i), "title": "t"} for i in range(51)]}, 422,
     ["body", "items"]),
    ("/v1/explain/page", {"query": QUERY, "items": []}, 422, ["body", "items"]),
    ("/v1/explain/page", {"query": QUERY, "items": [{"id": "a"}], "mode": "teacher"}, 422, ["body", "mode"]),
    ("/v1/explain/page", {"query": QUERY, "items": [{"id": "a"}], "writer": "llm"}, 422, ["body", "writer"]),
])
def test_bad_input_is_a_clear_4xx_naming_the_field(client: TestClient, path: str, body: dict, status: int,
                                                   field: list[str] | None) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if field is not None:
        assert error["fields"][0]["loc"] == field, error
    elif status == 404:
        assert error["message"].startswith("item_id: item 'no-such-item'")
        assert error["fields"][0]["loc"] == ["body", "item_id"]
    else:
        assert "no teacher configured" in error["message"]


def test_edits_remove_every_occurrence_and_add_in_front() -> None:
    title = "Grape Solar 200-Watt Solar Panel Kit with solar panel mounts"
    assert Edit("remove", ("Solar Panel",)).apply(title) == "Grape Solar 200-Watt Kit with mounts"
    assert Edit("remove", ("Kit", "200-Watt")).apply(title) == "Grape Solar Solar Panel with solar panel mounts"
    assert Edit("add", ("off grid", "inverter")).apply(title) == f"off grid inverter {title}"
    good = parse("Thinking: query has product requirement: solar panel; ad in product: Solar Panel, matches. "
                 "Final judgment: Good", "solar panel", title).explanation
    bad = parse("Thinking: query has brand requirement: renogy, product requirement: solar panel; ad in brand: "
                "Grape Solar, mismatches. Final judgment: Bad-brand mismatch", "renogy solar panel", title).explanation
    assert good is not None and bad is not None
    assert implied_edit(good) == Edit("remove", ("Solar Panel",))
    assert implied_edit(bad) == Edit("add", ("renogy",))


def test_words_and_runs_are_citable_spans() -> None:
    title = "Simpson Strong-Tie (12-Gauge) Angle, Bracket"
    spans = words(title)
    assert [title[s:e] for s, e in spans] == ["Simpson", "Strong-Tie", "12-Gauge", "Angle", "Bracket"]
    assert [title[s:e] for s, e in runs({0, 1, 3, 4}, spans)] == ["Simpson Strong-Tie", "Angle, Bracket"]
    assert re.fullmatch(r"[\w-]+", title[spans[2][0]:spans[2][1]])
