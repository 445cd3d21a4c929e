"""`mothbrain wiki review`: the heartbeat — a reviewer drains the queue's wiki proposals at a steady rate.

The reviewer is any OpenAI-compatible endpoint (wiki.reviewer_url, the `openai` SDK with base_url; its
key from $wiki.reviewer_api_key_env or a 0600 wiki.reviewer_api_key_file). Each proposal goes with its
kind's rubric and asks for structured output, {"decision": "accept" | "reject", "reason": "..."}.
Without an endpoint a conservative local reviewer decides: it accepts crosslinks scoring at least
wiki.local_accept_score, rejects patches that would write outside the wiki, and leaves everything else
to a person (`mothbrain proposals accept|reject ID`).

Every review is kept (queue table `reviews`) with its requests, tokens and seconds — the project's
only API spend, shown in the briefing. Nothing is lost to a bad reviewer: a timeout, a refused
connection or a rate limit that outlasts the SDK's retries (429 honours Retry-After, with back-off)
ends the run with the proposals still pending and fails the stage (ReviewerUnavailable: the wiki
chain exits non-zero); an answer that is not the asked-for JSON — cut off, not JSON, not even a chat
completion — is recorded as an error and the proposal stays pending for the next run.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

from mothbrain.config import Config
from mothbrain.core.openai_client import make_client
from mothbrain.core.secrets import read_secret
from mothbrain.errors import MothError, NothingToDo
from mothbrain.proposals import queue
from mothbrain.wiki.merge import Refused, safe_path
from mothbrain.wiki.scan import wiki_root

log = logging.getLogger(__name__)

RUBRICS = {
    "crosslink": (
        "A crosslink turns existing words on a page into a link to another page. Accept only when a reader "
        "at that sentence would plausibly want the linked page (same sense of the word, same topic), the "
        "anchor is the existing text, and the link is not redundant. Reject a mention in another sense."
    ),
    "split": (
        "A split moves sections that cover a different topic to a new page, linked both ways. Accept only "
        "when the moved sections really are another topic and each page stands on its own afterwards."
    ),
    "frame": (
        "A frame proposal adds a new opening so the page answers the question a reader arrives with. Accept "
        "only when the proposed opening is accurate to the page, clear, and better than the current one."
    ),
    "staleness": (
        "A staleness proposal adds a dated warning quoting recent evidence that the page's statement has "
        "changed. Accept only when the evidence really contradicts or supersedes the statement: it says the "
        "same subject is now done, kept or set differently (one thing replaced by another, or ended). Reject "
        "a habitual or passing remark ('these days', 'I have stopped asking why'), one day's choice ('I "
        "walked instead of working'), a change to something else on the same topic, and evidence that "
        "agrees with the page."
    ),
}
INSTRUCTIONS = (
    "You review proposed edits to a personal wiki. Judge the one proposal below by its rubric. Answer with "
    'JSON only: {"decision": "accept" or "reject", "reason": "one sentence"}.'
)
SCHEMA = {
    "type": "object",
    "properties": {"decision": {"type": "string", "enum": ["accept", "reject"]}, "reason": {"type": "string"}},
    "required": ["decision", "reason"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "review", "strict": True, "schema": SCHEMA}}
MAX_DIFF_CHARS = 4000
MAX_GARBAGE_IN_A_ROW = 5  # answers that are not the JSON asked for before the run stops
MAX_ERRORS = 3  # errors one reviewer may have on a proposal before it is left to a person


class ReviewerDown(Exception):
    """The reviewer cannot be reached (or keeps refusing); the run stops, nothing is decided."""


class ReviewerUnavailable(MothError):
    """The run stopped because the reviewer is down: a failed stage (cron and the chain exit non-zero),
    with the report of what was reviewed before it stopped."""

    def __init__(self, message: str, report: ReviewReport):
        super().__init__(message)
        self.report = report


@dataclass
class Verdict:
    decision: str  # accept | reject | defer | error
    reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    seconds: float = 0.0


def proposal_text(p: dict[str, Any]) -> str:
    diff = (p.get("patch") or {}).get("diff", "")
    if len(diff) > MAX_DIFF_CHARS:
        diff = diff[:MAX_DIFF_CHARS] + "\n... (diff cut)"
    return (
        f"Kind: {p['kind']}\nPage: {p['target']}\nProposal: {p['text']}\nScore: {p.get('score')}\n"
        f"Why: {p.get('rationale', '')}\n\nPatch (unified diff):\n{diff}"
    )


def parse_verdict(content: str) -> tuple[str, str]:
    """(decision, reason) from the reviewer's answer, or ValueError naming what is wrong with it."""
    text = (content or "").strip()
    if text.startswith("```"):  # some servers fence JSON even when asked not to
        text = text.strip("`").removeprefix("json").strip()
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("decision") not in ("accept", "reject"):
        raise ValueError(f"no decision accept/reject in {text[:120]!r}")
    return data["decision"], str(data.get("reason", "")).strip()[:500] or "(no reason given)"


class OpenAIReviewer:
    """Any OpenAI-compatible chat endpoint, through the `openai` SDK."""

    def __init__(self, cfg: Config):

        w = cfg.wiki
        if not w.reviewer_model:
            raise MothError("wiki.reviewer_url is set but wiki.reviewer_model is empty; name the model to review with")
        key = read_secret(cfg, w.reviewer_api_key_env, w.reviewer_api_key_file, "wiki.reviewer_api_key_file")
        self.requests = 0

        def count(_request) -> None:  # every HTTP request, retries included: what the provider bills
            self.requests += 1

        self.client = make_client(
            w.reviewer_url, key, timeout=w.reviewer_timeout_s, max_retries=w.reviewer_max_retries, on_request=count
        )
        self.model = w.reviewer_model
        self.name = f"{w.reviewer_model}@{urlparse(w.reviewer_url).netloc or w.reviewer_url}"
        self.structured = True  # dropped once if the server refuses response_format
        self.paced = True

    def review(self, p: dict[str, Any]) -> Verdict:
        import openai

        messages = [
            {"role": "system", "content": f"{INSTRUCTIONS}\n\nRubric: {RUBRICS.get(p['kind'], '')}"},
            {"role": "user", "content": proposal_text(p)},
        ]
        before, t0 = self.requests, time.perf_counter()
        try:
            resp = self._create(messages)
        except openai.RateLimitError as exc:
            raise ReviewerDown(f"rate limited past {self.client.max_retries} retries ({_short(exc)})") from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise ReviewerDown(f"unreachable ({type(exc).__name__}: {_short(exc)})") from None
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:  # this proposal, not the reviewer
            return Verdict(
                "error",
                f"the reviewer refused this proposal: HTTP {exc.status_code} ({_short(exc)})",
                requests=self.requests - before,
                seconds=round(time.perf_counter() - t0, 3),
            )
        except openai.APIStatusError as exc:
            raise ReviewerDown(f"answered HTTP {exc.status_code} ({_short(exc)})") from None
        except ValueError as exc:  # a body that is no JSON at all (cut off, an HTML error page): this answer
            return Verdict(
                "error",
                f"unreadable answer: not a chat completion ({_short(exc)}); left pending",
                requests=self.requests - before,
                seconds=round(time.perf_counter() - t0, 3),
            )
        usage = getattr(resp, "usage", None)
        verdict = Verdict(
            "error",
            "",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            requests=self.requests - before,
            seconds=round(time.perf_counter() - t0, 3),
        )
        choice = None
        try:
            choice = resp.choices[0]
            verdict.decision, verdict.reason = parse_verdict(choice.message.content)
        except (ValueError, AttributeError, IndexError, TypeError) as exc:
            cut = getattr(choice, "finish_reason", "") == "length"
            verdict.reason = (
                f"unreadable answer ({'cut off at max_tokens: ' if cut else ''}{_short(exc)}); left pending"
            )
        return verdict

    def _create(self, messages):
        import openai

        kwargs = {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": 300}
        if self.structured:
            try:
                return self.client.chat.completions.create(**kwargs, response_format=RESPONSE_FORMAT)
            except openai.BadRequestError as exc:
                first = exc
            try:  # is it response_format the server refuses, or this proposal?
                resp = self.client.chat.completions.create(**kwargs)
            except openai.BadRequestError:
                raise first from None  # refused either way: the proposal (too long, filtered)
            log.warning("the reviewer refused structured output (%s); asking for JSON in words", _short(first))
            self.structured = False
            return resp
        return self.client.chat.completions.create(**kwargs)


class LocalReviewer:
    """Rules only, and conservative: accepts high-scoring crosslinks, leaves the rest to a person."""

    name = "local-rules"

    def __init__(self, cfg: Config):

        self.threshold = cfg.wiki.local_accept_score
        self.root = wiki_root(cfg)

    def review(self, p: dict[str, Any]) -> Verdict:

        for f in (p.get("patch") or {}).get("files") or []:
            try:
                safe_path(self.root, f.get("path", ""))
            except Refused as exc:
                return Verdict("reject", f"the patch writes outside the wiki: {exc}")
        if p["kind"] != "crosslink":
            return Verdict("defer", f"the local reviewer decides only crosslinks; this {p['kind']} waits for a person")
        score = p.get("score") or 0.0
        if score < self.threshold:
            return Verdict(
                "defer", f"score {score:.2f} below wiki.local_accept_score {self.threshold:.2f}; left for a person"
            )
        return Verdict("accept", f"crosslink score {score:.2f} >= {self.threshold:.2f}")


def make_reviewer(cfg: Config):
    return OpenAIReviewer(cfg) if cfg.wiki.reviewer_url else LocalReviewer(cfg)


@dataclass
class ReviewReport:
    reviewer: str
    reviewed: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    left_pending: int = 0
    stopped: str = ""  # why the run ended early ("" when it drained what it took)
    title: str = "wiki review"

    @property
    def warnings(self) -> list[str]:
        return [self.stopped] if self.stopped else []

    def rows(self) -> list[dict[str, Any]]:
        return [{"decision": k, "proposals": v} for k, v in sorted(self.decisions.items())]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_review(cfg: Config, reviewer=None, sleep=time.sleep) -> ReviewReport:
    reviewer = reviewer or make_reviewer(cfg)
    todo = queue.awaiting_review(cfg, reviewer.name, cfg.wiki.max_reviews, max_errors=MAX_ERRORS)
    if not todo:
        raise NothingToDo("no wiki proposals waiting for review")
    report = ReviewReport(reviewer=reviewer.name)
    paced = getattr(reviewer, "paced", False)  # rules cost nothing: only an endpoint is held to the rate
    interval = 3600.0 / cfg.wiki.reviews_per_hour if paced and cfg.wiki.reviews_per_hour > 0 else 0.0
    garbage_in_a_row = 0
    next_start = time.monotonic()
    for p in todo:
        wait = next_start - time.monotonic()
        if wait > 0:
            sleep(wait)  # the heartbeat: a steady rate, never a burst at the provider
        next_start = time.monotonic() + interval
        t0, spent = time.perf_counter(), getattr(reviewer, "requests", 0)
        try:
            v = reviewer.review(p)
        except ReviewerDown as exc:
            # "down", not "error": an outage is no fault of this proposal's and never counts against it
            v = Verdict("down", f"reviewer {exc}", requests=getattr(reviewer, "requests", 0) - spent)
            report.stopped = f"the reviewer {reviewer.name} is {exc}; the rest stay pending for the next run"
            log.warning("wiki review stopped: %s", report.stopped)
        v.seconds = v.seconds or round(time.perf_counter() - t0, 3)
        queue.record_review(
            cfg,
            p["id"],
            reviewer.name,
            v.decision,
            v.reason,
            prompt_tokens=v.prompt_tokens,
            completion_tokens=v.completion_tokens,
            requests=v.requests,
            seconds=v.seconds,
        )
        report.reviewed += 1
        report.decisions[v.decision] = report.decisions.get(v.decision, 0) + 1
        report.requests += v.requests
        report.prompt_tokens += v.prompt_tokens
        report.completion_tokens += v.completion_tokens
        report.seconds = round(report.seconds + v.seconds, 3)
        if report.stopped:
            break
        garbage_in_a_row = garbage_in_a_row + 1 if v.decision == "error" else 0
        if garbage_in_a_row >= MAX_GARBAGE_IN_A_ROW:
            report.stopped = (
                f"{garbage_in_a_row} answers in a row were not the JSON asked for; check wiki.reviewer_model "
                "(the rest stay pending)"
            )
            break
    report.left_pending = len(todo) - report.decisions.get("accept", 0) - report.decisions.get("reject", 0)
    if report.decisions.get("down"):
        decided = report.decisions.get("accept", 0) + report.decisions.get("reject", 0)
        raise ReviewerUnavailable(f"{report.stopped} ({decided} decided before it stopped)", report)
    return report


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__
