"""The ELLM-rele prompts (paper §3.2): the system prompt S, the few-shot examples E, and the two prompts built from
them as OpenAI chat messages:

- ``annotation_messages(query, title)`` = S + E + Q + T, the prompt P_L-LLM (eq. 1) with which a larger LLM writes
  CoT annotations;
- ``teacher_messages(query, title)`` = S + Q + T, the prompt P_LLM (eq. 3) of the fine-tuned teacher, used for SFT,
  pseudo-labelling and the explain API.

Every assistant text here is rendered with `relevance_core.cot.render`, so the examples are in the exact grammar
the parser reads. ``chatml_prompt`` renders messages with the ChatML template (SmolLM2, Qwen2) for servers that
only offer /v1/completions or when an assistant prefix must be continued.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from relevance_core.cot import ASPECTS, Explanation, ItemValue, QueryRequirement, render


class ChatMessage(TypedDict):
    """One OpenAI chat message."""

    role: Literal["system", "user", "assistant"]
    content: str


class Example(TypedDict):
    """A few-shot example: a pair from the Home Depot catalogue and its CoT."""

    query: str
    title: str
    explanation: Explanation


_ASPECT_LINES = "\n".join(f"- {aspect}: {definition}" for aspect, definition in ASPECTS.items())

_GRAMMAR_EXAMPLE = render(
    Explanation(
        query_requirements=[
            QueryRequirement(aspect="product", value="angle bracket"),
            QueryRequirement(aspect="brand", value="simpson"),
        ],
        item_values=[
            ItemValue(aspect="product", value="Angle", matches=True),
            ItemValue(aspect="brand", value="Simpson Strong-Tie", matches=True),
        ],
        judgement="Good",
    )
)

SYSTEM_PROMPT = f"""\
You judge search results of a home-improvement store (tools, building materials, hardware, plumbing, electrical, \
lighting, paint, flooring, appliances, garden and outdoor products). Given a search query and the title of a \
product returned for it, decide whether the product is a Good or a Bad result for the query, reasoning step by \
step over the aspects below.

Aspects:
{_ASPECT_LINES}

Write exactly one line, in this form and nothing else:
Thinking: query has <aspect> requirement: <words of the query>, <aspect> requirement: <words of the query>; \
ad in <aspect>: <words of the title>, matches; ad in <aspect>: <words of the title>, mismatches. \
Final judgment: Good
- First list what the query asks for, one "<aspect> requirement: <value>" per aspect. Copy each value word for \
word from the query, keeping the searcher's spelling. If the query asks for nothing specific, write \
"query has no requirements".
- Then check the product against each requirement with "ad in <aspect>: <value>, matches" or \
"ad in <aspect>: <value>, mismatches". Copy each value word for word from the title. If the title says nothing \
about the requirements, write "ad has no attributes".
- Use only the aspect names listed above.
- You may add one short sentence before "Final judgment" when the reason is not obvious.
- End with "Final judgment: Good" if every requirement is met, else with "Final judgment: Bad-" and the main \
reason, such as "Final judgment: Bad-brand mismatch".

Example, for the query "simpson angle bracket" and the product "Simpson Strong-Tie 12-Gauge Angle":
{_GRAMMAR_EXAMPLE}

Judge as the store's human raters were told to. They rated each pair 1 (irrelevant), 2 (partially relevant) or \
3 (perfect match); Good means that most of them saw a perfect match.
- Judge the searcher's intent, not the words the query and the title share. A product that shares words with \
the query but means something else is Bad.
- Brand is as important as function: when the query names a brand, only that brand's products are Good.
- Good is a perfect match: exactly what the searcher was most likely looking for, a product made by the brand \
searched for, or a kit that includes the searched product.
- The same kind of product that differs in brand, size, colour or specification is only partially relevant: Bad.
- A tool, accessory, spare part, cover or case used with the searched product is irrelevant: Bad.
- A set of items that does not include the searched product is Bad. When the query names several products, \
a product that is only one of them is Bad.
"""

# Pairs from data/homedepot/pairs.tsv (ids 1053, 43224, 593, 748) with the Good/Bad label they carry there
# (Good = mean rating > 2.0): two Good, two Bad (a brand mismatch and an accessory).
EXAMPLES: tuple[Example, ...] = (
    Example(
        query="satin nickel pull",
        title="Hickory Hardware Studio 5 in. Satin Nickel Pull",
        explanation=Explanation(
            query_requirements=[
                QueryRequirement(aspect="color", value="satin nickel"),
                QueryRequirement(aspect="product", value="pull"),
            ],
            item_values=[
                ItemValue(aspect="color", value="Satin Nickel", matches=True),
                ItemValue(aspect="product", value="Pull", matches=True),
            ],
            judgement="Good",
        ),
    ),
    Example(
        query="20v dewalt kombo",
        title="DEWALT 20-Volt Max Lithium-Ion Cordless Combo Kit (5-Tool)",
        explanation=Explanation(
            query_requirements=[
                QueryRequirement(aspect="other properties", value="20v"),
                QueryRequirement(aspect="brand", value="dewalt"),
                QueryRequirement(aspect="product", value="kombo"),
            ],
            item_values=[
                ItemValue(aspect="other properties", value="20-Volt", matches=True),
                ItemValue(aspect="brand", value="DEWALT", matches=True),
                ItemValue(aspect="product", value="Combo Kit", matches=True),
            ],
            judgement="Good",
        ),
    ),
    Example(
        query="toro snow blowers gas",
        title="Ariens Deluxe 28 in. Two-Stage Electric Start Gas Snow Blower with Auto-Turn Steering",
        explanation=Explanation(
            query_requirements=[
                QueryRequirement(aspect="brand", value="toro"),
                QueryRequirement(aspect="product", value="snow blowers"),
                QueryRequirement(aspect="other properties", value="gas"),
            ],
            item_values=[
                ItemValue(aspect="brand", value="Ariens", matches=False),
                ItemValue(aspect="product", value="Snow Blower", matches=True),
                ItemValue(aspect="other properties", value="Gas", matches=True),
            ],
            judgement="Bad",
            reason="brand mismatch",
        ),
    ),
    Example(
        query="5 gal buckets",
        title="Leaktite 5-gal. Homer Leakproof Lid",
        explanation=Explanation(
            query_requirements=[
                QueryRequirement(aspect="other properties", value="5 gal"),
                QueryRequirement(aspect="product", value="buckets"),
            ],
            item_values=[
                ItemValue(aspect="other properties", value="5-gal", matches=True),
                ItemValue(aspect="main parts", value="Leakproof Lid", matches=False),
            ],
            judgement="Bad",
            reason="main parts mismatch",
            note="The lid is an accessory of a bucket, not a bucket.",
        ),
    ),
)


def user_message(query: str, title: str) -> ChatMessage:
    """The Q + T part of a prompt."""
    return {"role": "user", "content": f"Query: {query}\nProduct title: {title}"}


def teacher_messages(query: str, title: str) -> list[ChatMessage]:
    """P_LLM = S + Q + T: the prompt of the fine-tuned teacher (no examples)."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, user_message(query, title)]


def annotation_messages(query: str, title: str) -> list[ChatMessage]:
    """P_L-LLM = S + E + Q + T: the few-shot prompt with which a larger LLM writes CoT annotations. Each example is
    a user turn (its query and title) answered by an assistant turn (its rendered CoT)."""
    messages: list[ChatMessage] = [{"role": "system", "content": SYSTEM_PROMPT}]
    for example in EXAMPLES:
        messages.append(user_message(example["query"], example["title"]))
        messages.append({"role": "assistant", "content": render(example["explanation"])})
    messages.append(user_message(query, title))
    return messages


def chatml_prompt(messages: list[ChatMessage], prefill: str = "") -> str:
    """``messages`` in the ChatML template, opening the assistant turn and continuing it with ``prefill``."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return f"{turns}<|im_start|>assistant\n{prefill}"
