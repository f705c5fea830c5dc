"""C8 data: short articles on one subject, asked questions they do and do not answer.

An article is four facts about one subject (``tables/article_facts.jsonl``), each fact in
one of two wordings, in a seeded order. Each article is asked one *control* question (its answer is
in the article) and several *off-topic* questions about unrelated things with well-known
answers (Hogwarts' headmaster, the capital of Australia); an off-topic question whose
answer occurs in the article is never asked of it. A record carries the two classes of
continuations the evaluator compares: ``answers`` (phrasings of the answer; for an
off-topic question the world's answer, to which the evaluator adds the model's own
closed-book answer) and ``refusals`` (phrasings of "the article does not say").

Framings (``FRAMINGS``) put text around the same article and question to make the
intended conditional explicit: "plain" (nothing), "complete" (a header: this is the whole
article and all you have), "instruction" (after the article: answer only from it, or say
it does not say), and "quiz" (a header that defines the correct answer to a question the
article does not answer as "The article does not say."). A prompt is built in two parts:
``context`` (header and article: shared by every question asked of that article under
that framing, so it is encoded once) and ``query`` (any note, the question, the answer
cue). Layouts vary the question lines ("Question:/Answer:" or "Q:/A:").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from myopia.faithfulness.records import read_table

KINDS = ("off-topic", "control")
LAYOUTS = {"question-answer": ("Question: ", "\nAnswer:"), "q-a": ("Q: ", "\nA:")}
REFUSALS = (
    " The article does not",
    " The text does not",
    " It is not mentioned",
    " Not stated in the article",
)


@dataclass(frozen=True)
class ArticleQuestion:
    id: str
    article_id: str  # questions about one article share it
    subject: str
    article: str
    question: str
    kind: str  # off-topic | control
    answers: list[str]  # class "answers the question" (continuations of the answer cue)
    refusals: list[str]  # class "the article does not say"
    layout: str = "question-answer"

    def check(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {tuple(LAYOUTS)}, not {self.layout!r}")
        if not self.article.strip() or not self.question.strip():
            raise ValueError("article and question must not be empty")
        for name in ("answers", "refusals"):
            if not getattr(self, name) or not all(p.strip() for p in getattr(self, name)):
                raise ValueError(f"{name} needs at least one non-empty phrasing")
        _check_answers_add_something(self.question, self.answers)


@dataclass(frozen=True)
class Framing:
    header: str  # before "Article:"
    note: str  # between the article and the question


FRAMINGS = {
    "plain": Framing("", ""),
    "complete": Framing(
        "The following is the complete article. It is all the information you have.\n\n", ""
    ),
    "instruction": Framing(
        "", "Answer only from the article. If the article does not contain the answer, say so.\n"
    ),
    "quiz": Framing(
        "Reading test. Every question is about the article below, and the article is the only "
        "source allowed. If the article does not give the answer, the correct answer is "
        '"The article does not say."\n\n',
        "",
    ),
}


def framed_prompt(record: ArticleQuestion, framing: str) -> tuple[str, str]:
    """(context, query) of ``record`` under ``framing``; the prompt is their join."""
    frame = FRAMINGS[framing]
    ask, cue = LAYOUTS[record.layout]
    context = f"{frame.header}Article:\n{record.article}"
    return context, f"\n\n{frame.note}{ask}{record.question}{cue}"


def closed_book_prompt(question: str, layout: str = "question-answer") -> str:
    """The question with no article: the model's answer here is its prior."""
    ask, cue = LAYOUTS[layout]
    return f"{ask}{question}{cue}"


@dataclass(frozen=True)
class Fact:
    """One fact of a subject (a line of ``tables/article_facts.jsonl``): two wordings of it,
    the question it answers and that answer's phrasings."""

    subject: str
    wordings: list[str]
    question: str
    answers: list[str]

    def check(self) -> None:
        if len(self.wordings) != 2 or not all(w.strip() for w in self.wordings):
            raise ValueError("wordings must be two non-empty sentences")
        _check_question(self.question, self.answers)


@dataclass(frozen=True)
class OffTopicQuestion:
    """A question with a well-known answer, asked of articles that do not contain it."""

    question: str
    answers: list[str]

    def check(self) -> None:
        _check_question(self.question, self.answers)


def _check_question(question: str, answers: list[str]) -> None:
    if not question.strip() or not answers or not all(a.strip() for a in answers):
        raise ValueError("question and answers must not be empty")
    _check_answers_add_something(question, answers)


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _check_answers_add_something(question: str, answers: list[str]) -> None:
    """An answer phrasing must be the answer, not a sentence opener that restates the
    question (" The capital of Australia is"): any reply, a refusal included, might start
    that way, so its probability says nothing about answering."""
    for answer in answers:
        if _words(answer) <= _words(question):
            raise ValueError(
                f"answer phrasing {answer!r} only repeats words of the question; give the "
                "answer itself"
            )


def _facts_by_subject(facts: list[Fact]) -> dict[str, tuple[Fact, ...]]:
    subjects: dict[str, list[Fact]] = {}
    for fact in facts:  # in the table's order: the seeded draws index into it
        subjects.setdefault(fact.subject, []).append(fact)
    return {subject: tuple(group) for subject, group in subjects.items()}


SUBJECTS: dict[str, tuple[Fact, ...]] = _facts_by_subject(read_table("article_facts.jsonl", Fact))
OFF_TOPIC: tuple[OffTopicQuestion, ...] = tuple(
    read_table("off_topic_questions.jsonl", OffTopicQuestion)
)


def answer_in(text: str, answers: tuple[str, ...] | list[str]) -> bool:
    """True if any answer phrasing occurs in ``text`` as whole words (case-insensitive);
    sentence openers such as "The capital of Japan is" count too."""
    return any(
        re.search(rf"(?<!\w){re.escape(a.strip())}(?!\w)", text, re.IGNORECASE) for a in answers
    )


def generate_article_questions(
    n: int, seed: int = 0, off_topic_per_article: int = 4, facts_per_article: int = 4
) -> list[ArticleQuestion]:
    """``n`` records: per article one control and ``off_topic_per_article`` off-topic
    questions, articles drawn from the subjects in a seeded cycle."""
    if n < 1 or off_topic_per_article < 1:
        raise ValueError("n and off_topic_per_article must be at least 1")
    rng = np.random.default_rng(seed)
    subjects = list(SUBJECTS)
    per_article = off_topic_per_article + 1
    n_articles = -(-n // per_article)
    subject_order = rng.permutation(len(subjects))
    question_order = list(rng.permutation(len(OFF_TOPIC)))
    records: list[ArticleQuestion] = []
    for a in range(n_articles):
        subject = subjects[subject_order[a % len(subjects)]]
        facts = SUBJECTS[subject]
        chosen = rng.choice(len(facts), size=facts_per_article, replace=False)
        article = " ".join(facts[i].wordings[int(rng.integers(2))] for i in chosen)
        layout = list(LAYOUTS)[int(rng.integers(len(LAYOUTS)))]
        article_id = f"art{seed}-{a:03d}"
        control = facts[chosen[int(rng.integers(len(chosen)))]]
        records.append(
            ArticleQuestion(
                f"{article_id}-control",
                article_id,
                subject,
                article,
                control.question,
                "control",
                list(control.answers),
                list(REFUSALS),
                layout,
            )
        )
        asked = 0
        while asked < off_topic_per_article:
            if not question_order:  # every question used once: start a new seeded cycle
                question_order = list(rng.permutation(len(OFF_TOPIC)))
            off_topic = OFF_TOPIC[question_order.pop(0)]
            question, answers = off_topic.question, off_topic.answers
            if answer_in(article, answers) or any(
                r.question == question for r in records[-asked - 1 :]
            ):
                continue
            records.append(
                ArticleQuestion(
                    f"{article_id}-q{asked}",
                    article_id,
                    subject,
                    article,
                    question,
                    "off-topic",
                    list(answers),
                    list(REFUSALS),
                    layout,
                )
            )
            asked += 1
    return records[:n]
