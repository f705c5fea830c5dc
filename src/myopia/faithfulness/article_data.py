"""C8 data: short articles on one subject, asked questions they do and do not answer.

An article is four facts about one of the subjects below, each fact in one of two
wordings, in a seeded order. Each article is asked one *control* question (its answer is
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
    wordings: tuple[str, str]
    question: str
    answers: tuple[str, ...]


def _fact(one: str, two: str, question: str, *answers: str) -> Fact:
    return Fact((one, two), question, answers)


SUBJECTS: dict[str, tuple[Fact, ...]] = {
    "coffee": (
        _fact(
            "Coffee is brewed from the roasted seeds of the Coffea plant.",
            "The drink comes from roasted seeds of a shrub called Coffea.",
            "What plant do coffee seeds come from?",
            " Coffea",
            " The Coffea plant",
            " the Coffea plant",
        ),
        _fact(
            "Legend says a goatherd named Kaldi discovered coffee in Ethiopia.",
            "According to legend, coffee was found by Kaldi, a goatherd in Ethiopia.",
            "Who discovered coffee according to legend?",
            " Kaldi",
            " A goatherd named Kaldi",
            " a goatherd named Kaldi",
        ),
        _fact(
            "The first coffeehouses opened in Mecca in the fifteenth century.",
            "Coffeehouses first appeared in Mecca, in the 1400s.",
            "In which city did the first coffeehouses open?",
            " Mecca",
            " In Mecca",
        ),
        _fact(
            "Espresso is made by forcing hot water through finely ground beans.",
            "To make espresso, hot water is pressed through fine grounds.",
            "What is forced through the grounds to make espresso?",
            " Hot water",
            " hot water",
        ),
        _fact(
            "Green coffee beans are roasted until they turn brown.",
            "Roasting turns the green beans brown.",
            "What colour are coffee beans before roasting?",
            " Green",
            " green",
        ),
    ),
    "honeybees": (
        _fact(
            "A honeybee colony is led by a single queen.",
            "Each hive has one queen at its head.",
            "Who leads a honeybee colony?",
            " A single queen",
            " The queen",
            " a single queen",
            " the queen",
            " One queen",
        ),
        _fact(
            "Worker bees make wax from glands on their abdomens.",
            "The wax of the comb comes from glands on the workers' abdomens.",
            "Where does beeswax come from?",
            " Glands on",
            " glands on",
            " From glands",
        ),
        _fact(
            "Bees tell each other where flowers are with a waggle dance.",
            "A forager shares the location of flowers through the waggle dance.",
            "How do bees tell each other where flowers are?",
            " With a waggle dance",
            " The waggle dance",
            " By a waggle dance",
            " with a waggle dance",
        ),
        _fact(
            "Male honeybees are called drones.",
            "The males of the hive are known as drones.",
            "What are male honeybees called?",
            " Drones",
            " drones",
        ),
        _fact(
            "Honey is made from nectar that the bees dry by fanning their wings.",
            "Bees turn nectar into honey by fanning it dry with their wings.",
            "What do bees make honey from?",
            " Nectar",
            " nectar",
            " From nectar",
        ),
    ),
    "the Sahara": (
        _fact(
            "The Sahara is the largest hot desert in the world.",
            "No hot desert on Earth is larger than the Sahara.",
            "What is the largest hot desert in the world?",
            " The Sahara",
            " the Sahara",
            " Sahara",
        ),
        _fact(
            "Its highest peak is Emi Koussi, a volcano in Chad.",
            "The desert's highest point is Emi Koussi, a volcano in Chad.",
            "What is the highest peak of the Sahara?",
            " Emi Koussi",
        ),
        _fact(
            "The Tuareg people have crossed the desert with camel caravans for centuries.",
            "For centuries the Tuareg crossed the sands with camel caravans.",
            "Which people crossed the Sahara with camel caravans?",
            " The Tuareg",
            " the Tuareg",
            " Tuareg",
        ),
        _fact(
            "Some dunes in the Sahara are taller than 180 metres.",
            "The Sahara's dunes can rise above 180 metres.",
            "How tall can the Sahara's dunes be?",
            " More than 180",
            " Over 180",
            " 180",
            " Taller than 180",
        ),
        _fact(
            "Thousands of years ago the Sahara was green and full of lakes.",
            "Long ago the region was green, with many lakes.",
            "What was the Sahara like thousands of years ago?",
            " Green",
            " green",
            " It was green",
        ),
    ),
    "volcanoes": (
        _fact(
            "Molten rock below the surface is called magma.",
            "Beneath the ground, melted rock is known as magma.",
            "What is molten rock below the surface called?",
            " Magma",
            " magma",
        ),
        _fact(
            "Once it reaches the surface, molten rock is called lava.",
            "Melted rock that erupts onto the surface is lava.",
            "What is molten rock at the surface called?",
            " Lava",
            " lava",
        ),
        _fact(
            "Mauna Loa in Hawaii is one of the largest volcanoes on the planet.",
            "Among the largest volcanoes anywhere is Mauna Loa, in Hawaii.",
            "Which Hawaiian volcano is one of the largest on the planet?",
            " Mauna Loa",
        ),
        _fact(
            "The eruption of Vesuvius buried the town of Pompeii.",
            "Pompeii was buried when Vesuvius erupted.",
            "Which town did Vesuvius bury?",
            " Pompeii",
        ),
        _fact(
            "Scientists who study volcanoes are called volcanologists.",
            "People who study volcanoes are known as volcanologists.",
            "What are scientists who study volcanoes called?",
            " Volcanologists",
            " volcanologists",
        ),
    ),
    "the violin": (
        _fact(
            "The violin has four strings tuned in fifths.",
            "Its four strings are tuned a fifth apart.",
            "How are the violin's strings tuned?",
            " In fifths",
            " in fifths",
            " A fifth apart",
        ),
        _fact(
            "Antonio Stradivari made some of the most famous violins in Cremona.",
            "In Cremona, Antonio Stradivari built some of the best-known violins.",
            "Who made some of the most famous violins in Cremona?",
            " Antonio Stradivari",
            " Stradivari",
        ),
        _fact(
            "The bow is strung with horsehair.",
            "Horsehair is used for the hair of the bow.",
            "What is the violin bow strung with?",
            " Horsehair",
            " horsehair",
        ),
        _fact(
            "Plucking the strings instead of bowing is called pizzicato.",
            "When a player plucks the strings, it is called pizzicato.",
            "What is plucking the violin strings called?",
            " Pizzicato",
            " pizzicato",
        ),
        _fact(
            "The top of a violin is usually carved from spruce.",
            "Violin makers usually carve the top from spruce.",
            "What wood is the top of a violin usually made of?",
            " Spruce",
            " spruce",
        ),
    ),
    "chess": (
        _fact(
            "A chess game ends when a king is checkmated.",
            "The game is over once a king is in checkmate.",
            "How does a chess game end?",
            " When a king is checkmated",
            " With checkmate",
            " Checkmate",
        ),
        _fact(
            "The knight is the only piece that can jump over others.",
            "Only the knight may jump over other pieces.",
            "Which piece can jump over others?",
            " The knight",
            " the knight",
            " Knight",
        ),
        _fact(
            "Castling moves the king and a rook in a single turn.",
            "In one turn, castling moves both the king and a rook.",
            "Which move moves the king and a rook in one turn?",
            " Castling",
            " castling",
        ),
        _fact(
            "A pawn that reaches the last rank is promoted, usually to a queen.",
            "Pawns reaching the far rank are promoted, most often to a queen.",
            "What happens to a pawn that reaches the last rank?",
            " It is promoted",
            " It gets promoted",
            " Promoted",
            " promoted",
        ),
        _fact(
            "Each player starts the game with sixteen pieces.",
            "At the start, each side has sixteen pieces.",
            "How many pieces does each chess player start with?",
            " Sixteen",
            " sixteen",
            " 16",
        ),
    ),
    "glaciers": (
        _fact(
            "Glaciers form where snow builds up faster than it melts.",
            "A glacier forms where more snow falls than melts.",
            "Where do glaciers form?",
            " Where snow builds up",
            " where snow builds up",
            " Where more snow falls",
        ),
        _fact(
            "Over years the snow is pressed into dense glacial ice.",
            "Years of pressure turn the snow into dense ice.",
            "What does the snow of a glacier turn into?",
            " Dense glacial ice",
            " Glacial ice",
            " dense glacial ice",
            " Ice",
        ),
        _fact(
            "Deep cracks in a glacier are called crevasses.",
            "The deep cracks that open in glaciers are known as crevasses.",
            "What are deep cracks in a glacier called?",
            " Crevasses",
            " crevasses",
        ),
        _fact(
            "Rocks carried and dropped by a glacier form ridges called moraines.",
            "Glaciers leave ridges of rock called moraines.",
            "What are the ridges of rock left by glaciers called?",
            " Moraines",
            " moraines",
        ),
        _fact(
            "The Lambert Glacier in Antarctica is among the largest glaciers.",
            "Antarctica's Lambert Glacier is one of the largest anywhere.",
            "Which Antarctic glacier is among the largest?",
            " The Lambert Glacier",
            " Lambert Glacier",
            " the Lambert Glacier",
        ),
    ),
    "bread": (
        _fact(
            "Yeast makes bread rise by producing carbon dioxide.",
            "Bread rises because yeast gives off carbon dioxide.",
            "What gas makes bread rise?",
            " Carbon dioxide",
            " carbon dioxide",
            " CO2",
        ),
        _fact(
            "Kneading the dough develops gluten, which makes it stretchy.",
            "Dough becomes stretchy as kneading develops its gluten.",
            "What does kneading develop in dough?",
            " Gluten",
            " gluten",
        ),
        _fact(
            "Sourdough is leavened with a starter of wild yeast and bacteria.",
            "A starter of wild yeast and bacteria leavens sourdough.",
            "What is sourdough leavened with?",
            " A starter",
            " a starter",
            " Wild yeast",
        ),
        _fact(
            "The French baguette is a long, thin loaf with a crisp crust.",
            "A baguette, from France, is a long thin loaf with a crisp crust.",
            "What shape is a baguette?",
            " Long and thin",
            " long and thin",
            " A long, thin loaf",
            " A long thin loaf",
        ),
        _fact(
            "Bakers often score the top of a loaf with a blade before baking.",
            "Before baking, the top of the loaf is often scored with a blade.",
            "What do bakers score the top of a loaf with?",
            " A blade",
            " a blade",
            " With a blade",
        ),
    ),
    "penguins": (
        _fact(
            "Emperor penguins are the tallest of all penguins.",
            "No penguin is taller than the emperor penguin.",
            "Which penguin is the tallest?",
            " The emperor penguin",
            " Emperor penguins",
            " the emperor penguin",
        ),
        _fact(
            "Penguins use their flippers to fly through the water.",
            "In the water, penguins fly with their flippers.",
            "What do penguins use to swim?",
            " Their flippers",
            " their flippers",
            " Flippers",
        ),
        _fact(
            "Male emperor penguins keep the egg warm on their feet.",
            "The male emperor holds the egg on his feet to keep it warm.",
            "Where does the male emperor penguin keep the egg?",
            " On their feet",
            " On his feet",
            " on their feet",
        ),
        _fact(
            "Most penguins live in the Southern Hemisphere.",
            "Nearly all penguins are found in the Southern Hemisphere.",
            "In which hemisphere do most penguins live?",
            " The Southern Hemisphere",
            " the Southern Hemisphere",
            " Southern",
        ),
        _fact(
            "Penguins eat mainly krill, squid and fish.",
            "Krill, squid and fish make up most of a penguin's diet.",
            "What do penguins mainly eat?",
            " Krill",
            " krill",
        ),
    ),
    "the bicycle": (
        _fact(
            "The early bicycle called the penny-farthing had a huge front wheel.",
            "A penny-farthing, an early bicycle, had a very large front wheel.",
            "Which early bicycle had a huge front wheel?",
            " The penny-farthing",
            " the penny-farthing",
            " Penny-farthing",
        ),
        _fact(
            "A chain carries the force of the pedals to the rear wheel.",
            "The pedals drive the rear wheel through a chain.",
            "What carries the force of the pedals to the rear wheel?",
            " A chain",
            " The chain",
            " a chain",
            " the chain",
        ),
        _fact(
            "Gears let a rider pedal at a comfortable pace on hills.",
            "On hills, gears keep the pedalling pace comfortable.",
            "What lets a rider pedal comfortably on hills?",
            " Gears",
            " gears",
            " The gears",
        ),
        _fact(
            "Pneumatic tyres were fitted to bicycles by John Boyd Dunlop.",
            "John Boyd Dunlop fitted bicycles with air-filled tyres.",
            "Who fitted bicycles with pneumatic tyres?",
            " John Boyd Dunlop",
            " Dunlop",
        ),
        _fact(
            "The Tour de France is a famous multi-stage bicycle race.",
            "A well-known stage race for bicycles is the Tour de France.",
            "What is a famous multi-stage bicycle race?",
            " The Tour de France",
            " the Tour de France",
            " Tour de France",
        ),
    ),
    "tea": (
        _fact(
            "All true tea comes from the leaves of Camellia sinensis.",
            "True tea is made from leaves of the plant Camellia sinensis.",
            "Which plant does true tea come from?",
            " Camellia sinensis",
            " The Camellia sinensis",
        ),
        _fact(
            "Green tea leaves are heated soon after picking to stop them from oxidising.",
            "To make green tea, leaves are heated right after picking so they do not oxidise.",
            "When are green tea leaves heated?",
            " Soon after picking",
            " soon after picking",
            " Right after picking",
            " right after picking",
        ),
        _fact(
            "Matcha is a powder of ground green tea leaves.",
            "Ground green tea leaves make a powder called matcha.",
            "What is matcha?",
            " A powder",
            " a powder",
            " Powdered green tea",
        ),
        _fact(
            "The Japanese tea ceremony is called chanoyu.",
            "In Japan the tea ceremony is known as chanoyu.",
            "What is the Japanese tea ceremony called?",
            " Chanoyu",
            " chanoyu",
        ),
        _fact(
            "Darjeeling tea is grown in the hills of West Bengal.",
            "The hills of West Bengal grow Darjeeling tea.",
            "Where is Darjeeling tea grown?",
            " In the hills of West Bengal",
            " West Bengal",
            " in the hills of West Bengal",
        ),
    ),
    "lighthouses": (
        _fact(
            "The Pharos of Alexandria was one of the earliest lighthouses.",
            "One of the first lighthouses was the Pharos of Alexandria.",
            "What was one of the earliest lighthouses?",
            " The Pharos of Alexandria",
            " the Pharos of Alexandria",
            " Pharos",
        ),
        _fact(
            "A Fresnel lens focuses the lamp's light into a strong beam.",
            "The lamp's light is focused into a beam by a Fresnel lens.",
            "What focuses a lighthouse lamp into a beam?",
            " A Fresnel lens",
            " The Fresnel lens",
            " a Fresnel lens",
        ),
        _fact(
            "Each lighthouse flashes its own pattern so sailors can tell it apart.",
            "Sailors tell lighthouses apart by their own flashing patterns.",
            "How can sailors tell lighthouses apart?",
            " By their own flashing patterns",
            " Its own pattern",
            " By its own pattern",
        ),
        _fact(
            "Keepers once lived in the towers to tend the lamps.",
            "Lamps were once tended by keepers who lived in the towers.",
            "Who once tended the lamps?",
            " Keepers",
            " keepers",
            " The keepers",
        ),
        _fact(
            "Most lighthouses today are automated.",
            "Today nearly every lighthouse runs automatically.",
            "How are most lighthouses run today?",
            " Automatically",
            " They are automated",
            " automatically",
            " Automated",
        ),
    ),
}

# Off-topic questions with well-known answers: (question, answer phrasings).
OFF_TOPIC: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Who is the headmaster of Hogwarts?", (" Albus Dumbledore", " Dumbledore", " Professor")),
    ("What is the capital of Australia?", (" Canberra", " The capital of Australia is")),
    ("Who painted the Mona Lisa?", (" Leonardo da Vinci", " Leonardo", " Da Vinci")),
    ("What is the chemical symbol for gold?", (" Au", " The chemical symbol for gold")),
    ("Who wrote Romeo and Juliet?", (" William Shakespeare", " Shakespeare")),
    ("How many legs does a spider have?", (" Eight", " 8", " A spider has")),
    ("What is the largest planet in the solar system?", (" Jupiter", " The largest planet")),
    ("Who developed the theory of relativity?", (" Albert Einstein", " Einstein")),
    ("What is the capital of Japan?", (" Tokyo", " The capital of Japan is")),
    ("At what temperature does water boil in degrees Celsius?", (" 100", " One hundred")),
    ("Who was the first president of the United States?", (" George Washington", " Washington")),
    ("What is the tallest mountain on Earth?", (" Mount Everest", " Everest", " The tallest")),
    ("Who wrote Pride and Prejudice?", (" Jane Austen", " Austen")),
    ("What language is spoken in Brazil?", (" Portuguese", " The language spoken in Brazil")),
    ("What is the square root of 81?", (" 9", " Nine", " The square root of 81")),
    ("Who discovered penicillin?", (" Alexander Fleming", " Fleming", " Sir Alexander")),
    ("Which planet is known as the Red Planet?", (" Mars", " The Red Planet is")),
    ("What is the largest ocean on Earth?", (" The Pacific", " Pacific", " the Pacific")),
    ("Who is Sherlock Holmes's assistant?", (" Dr. Watson", " Watson", " Doctor Watson")),
    ("What is the capital of Canada?", (" Ottawa", " The capital of Canada is")),
    ("Who composed the Moonlight Sonata?", (" Ludwig van Beethoven", " Beethoven")),
    ("What is the currency of Japan?", (" The yen", " Yen", " the yen")),
    ("How many continents are there?", (" Seven", " 7", " There are seven")),
    ("Who wrote the novel 1984?", (" George Orwell", " Orwell")),
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
            question, answers = OFF_TOPIC[question_order.pop(0)]
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
