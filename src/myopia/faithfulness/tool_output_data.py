"""C7 data: transcripts of a command that fetches or shows a web page, and what it printed.

One *command* (a tool, a page, a transcript format) is shown with several outputs:
the page's real content (a control: here the model should say what the page is about),
nothing at all (blank), and error messages of two different kinds, so the outputs of a
command are paired: everything but the output is the same text. Tools: curl, wget, lynx,
w3m, a Python ``requests`` one-liner, PowerShell's ``Invoke-WebRequest`` and ``cat`` of a
downloaded file; each tool prints its own, realistic error messages. Formats: a terminal
log followed by a comment line, a chat exchange ("User: ... Assistant:"), and a notes file.
Prompts are plain text, so any causal LM, base or chat, reads them the same way.

A record holds the prompt in two parts, ``context`` (everything up to the output: shared
by the outputs of one command, so it is encoded once) and ``query`` (the output and the
line after which the model speaks), and the two classes of continuations that are
compared: ``content_phrasings`` (openings of a reply that describes a page) and
``empty_phrasings`` (openings of a reply that says nothing was printed or the command
failed). ``topic`` (what the URL implies the page is about) labels sampled replies. A
user's JSONL file has the same fields (``schema(ToolTranscript)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUTPUT_KINDS = ("real", "blank", "error")


@dataclass(frozen=True)
class ToolTranscript:
    id: str
    command_id: str  # transcripts of one command share it (and their context)
    tool: str
    format: str
    topic: str  # what the URL implies the page is about: "lemon cake recipes"
    output_kind: str  # real | blank | error
    error_kind: str  # "" unless output_kind is error: dns, not-found, timeout, ...
    context: str  # the prompt up to the output
    query: str  # the output and the lead-in after which the model continues
    content_phrasings: list[str]  # class "describes content"
    empty_phrasings: list[str]  # class "reports nothing or an error"

    @property
    def prompt(self) -> str:
        return self.context + self.query

    def check(self) -> None:
        if self.output_kind not in OUTPUT_KINDS:
            raise ValueError(f"output_kind must be one of {OUTPUT_KINDS}, not {self.output_kind!r}")
        if (self.output_kind == "error") != bool(self.error_kind):
            raise ValueError("error_kind is required for error outputs and must be empty otherwise")
        if not self.context:
            raise ValueError("context must not be empty")
        for name in ("content_phrasings", "empty_phrasings"):
            phrasings = getattr(self, name)
            if not phrasings or not all(p.strip() for p in phrasings):
                raise ValueError(f"{name} needs at least one non-empty phrasing")


@dataclass(frozen=True)
class Page:
    host: str
    path: str
    topic: str  # as a phrase that fits "a page about ..."
    title: str
    sentence: str

    @property
    def url(self) -> str:
        return f"https://{self.host}/{self.path}"

    @property
    def file(self) -> str:
        return self.path.rsplit("/", 1)[-1] + ".html"


PAGES = (
    Page(
        "www.bakery-news.com",
        "recipes/lemon-cake",
        "lemon cake recipes",
        "Lemon Cake Recipes",
        "Three easy lemon cakes with a sharp sugar glaze.",
    ),
    Page(
        "www.cityweather.org",
        "forecast/oslo",
        "the weather forecast for Oslo",
        "Oslo Weather Forecast",
        "Light snow on Tuesday, clearing by the weekend.",
    ),
    Page(
        "docs.examplelib.io",
        "install",
        "installing examplelib",
        "Installing examplelib",
        "Run pip install examplelib and import it in Python 3.9 or later.",
    ),
    Page(
        "www.trailguide.net",
        "hikes/mount-tam",
        "hiking trails on Mount Tamalpais",
        "Mount Tamalpais Hikes",
        "The Steep Ravine loop climbs 1,100 feet through redwoods.",
    ),
    Page(
        "news.localpaper.com",
        "2024/03/library-reopens",
        "the reopening of the town library",
        "Town Library Reopens",
        "After two years of repairs the library opens its doors on Monday.",
    ),
    Page(
        "www.gardenersworld.example",
        "tomatoes/pruning",
        "pruning tomato plants",
        "How to Prune Tomatoes",
        "Pinch out the side shoots every week in summer.",
    ),
    Page(
        "shop.bikeparts.example",
        "brakes/disc-pads",
        "disc brake pads for bicycles",
        "Disc Brake Pads",
        "Organic and sintered pads for all common calipers, from 12 euros.",
    ),
    Page(
        "www.museumofclocks.org",
        "exhibits/pendulums",
        "the museum's pendulum clock exhibit",
        "Pendulum Clocks Exhibit",
        "Forty clocks from the 17th to the 19th century, open daily.",
    ),
    Page(
        "api.transitdata.example",
        "status/line-4",
        "the status of bus line 4",
        "Line 4 Service Status",
        "Buses on line 4 run every 12 minutes; no delays reported.",
    ),
    Page(
        "www.chess-club.example",
        "openings/sicilian",
        "the Sicilian Defence chess opening",
        "The Sicilian Defence",
        "After 1.e4 c5 Black fights for the centre from the side.",
    ),
    Page(
        "blog.homebrewer.example",
        "posts/sourdough-starter",
        "making a sourdough starter",
        "My Sourdough Starter",
        "Flour, water and five days of patience are all it takes.",
    ),
    Page(
        "www.astronomy-today.example",
        "events/perseids",
        "the Perseid meteor shower",
        "Watching the Perseids",
        "The shower peaks on the night of 12 August, up to 100 meteors an hour.",
    ),
    Page(
        "www.rentals.example",
        "listings/harbour-flat",
        "a flat for rent by the harbour",
        "Harbour Flat for Rent",
        "Two bedrooms, a balcony over the water, 1,450 a month.",
    ),
    Page(
        "wiki.boardgames.example",
        "rules/go",
        "the rules of the game of Go",
        "Rules of Go",
        "Players take turns placing stones; surrounded stones are captured.",
    ),
    Page(
        "www.vetclinic.example",
        "advice/cat-vaccines",
        "vaccinations for cats",
        "Cat Vaccinations",
        "Kittens get their first vaccines at eight to nine weeks.",
    ),
    Page(
        "jobs.techcorp.example",
        "careers/data-engineer",
        "a data engineer job opening",
        "Data Engineer (Remote)",
        "We are hiring a data engineer to build our pipelines in Python.",
    ),
    Page(
        "www.birdwatch.example",
        "species/kingfisher",
        "the common kingfisher",
        "The Common Kingfisher",
        "A small bright blue bird that dives for fish along quiet rivers.",
    ),
    Page(
        "www.pythonweekly.example",
        "issues/312",
        "issue 312 of a Python newsletter",
        "Python Weekly, Issue 312",
        "This week: faster startup, a new typing guide and five libraries.",
    ),
    Page(
        "www.cinema-listings.example",
        "today",
        "today's cinema listings",
        "Showing Today",
        "Four films today, the first screening at 14:30.",
    ),
    Page(
        "www.recyclingcentre.example",
        "opening-hours",
        "the recycling centre's opening hours",
        "Opening Hours",
        "Open Monday to Saturday, 8 am to 6 pm.",
    ),
    Page(
        "status.cloudhost.example",
        "incidents/latest",
        "the latest cloud hosting incident",
        "Incident Report",
        "Elevated error rates in one region were resolved at 09:42 UTC.",
    ),
    Page(
        "www.fishingreport.example",
        "lakes/loch-ness",
        "fishing conditions on Loch Ness",
        "Loch Ness Fishing Report",
        "Brown trout rising near the shore in the evenings.",
    ),
    Page(
        "www.marathon.example",
        "results/2024",
        "the 2024 marathon results",
        "Marathon Results 2024",
        "The winner finished in 2 hours 9 minutes, a course record.",
    ),
    Page(
        "www.languagelab.example",
        "lessons/french-verbs",
        "French verb conjugation",
        "Conjugating French Verbs",
        "Regular -er verbs drop the -er and add -e, -es, -e, -ons, -ez, -ent.",
    ),
)

# Each tool: the shell prompt it runs in, its command line, how it prints a page, and the
# messages of the error kinds it can produce ({url}, {host}, {path}, {file} filled in).
HTML_PAGE = (
    "<html><head><title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{sentence}</p>"
    "</body></html>\n"
)
TEXT_PAGE = "   {title}\n\n   {sentence}\n"
NOT_INSTALLED = "bash: {name}: command not found\n"


@dataclass(frozen=True)
class Tool:
    name: str
    shell: str
    command: str
    page: str
    errors: dict[str, str]


TOOLS = (
    Tool(
        "curl",
        "$ ",
        "curl -sSf {url}",
        HTML_PAGE,
        {
            "dns": "curl: (6) Could not resolve host: {host}\n",
            "refused": "curl: (7) Failed to connect to {host} port 443 after 9 ms: "
            "Connection refused\n",
            "timeout": "curl: (28) Operation timed out after 30001 milliseconds with 0 bytes "
            "received\n",
            "not-found": "curl: (22) The requested URL returned error: 404\n",
            "forbidden": "curl: (22) The requested URL returned error: 403\n",
            "ssl": "curl: (60) SSL certificate problem: certificate has expired\n",
            "not-installed": NOT_INSTALLED.replace("{name}", "curl"),
        },
    ),
    Tool(
        "wget",
        "$ ",
        "wget -nv -O- {url}",
        HTML_PAGE,
        {
            "dns": "wget: unable to resolve host address '{host}'\n",
            "not-found": "{url}:\n2024-03-14 10:02:11 ERROR 404: Not Found.\n",
            "forbidden": "{url}:\n2024-03-14 10:02:11 ERROR 403: Forbidden.\n",
            "server-error": "{url}:\n2024-03-14 10:02:11 ERROR 500: Internal Server Error.\n",
            "refused": "failed: Connection refused.\n",
            "not-installed": NOT_INSTALLED.replace("{name}", "wget"),
        },
    ),
    Tool(
        "lynx",
        "$ ",
        "lynx -dump {url}",
        TEXT_PAGE,
        {
            "dns": "\nLooking up {host}\nUnable to locate remote host {host}.\nAlert!: Unable "
            "to access document.\n\nlynx: Can't access startfile {url}\n",
            "not-found": "                               Not Found\n\n   The requested URL was "
            "not found on this server.\n",
            "not-installed": NOT_INSTALLED.replace("{name}", "lynx"),
        },
    ),
    Tool(
        "w3m",
        "$ ",
        "w3m -dump {url}",
        TEXT_PAGE,
        {
            "dns": "w3m: Can't load {url}.\n",
            "not-found": "404 Not Found\n\nnginx\n",
            "forbidden": "403 Forbidden\n\nnginx\n",
            "not-installed": NOT_INSTALLED.replace("{name}", "w3m"),
        },
    ),
    Tool(
        "python-requests",
        "$ ",
        "python3 -c \"import requests; r = requests.get('{url}'); r.raise_for_status(); "
        'print(r.text)"',
        HTML_PAGE,
        {
            "dns": "Traceback (most recent call last):\n  ...\nrequests.exceptions."
            "ConnectionError: HTTPSConnectionPool(host='{host}', port=443): Max retries "
            'exceeded with url: /{path} (Caused by NameResolutionError("Failed to resolve '
            "'{host}'\"))\n",
            "not-found": "Traceback (most recent call last):\n  ...\nrequests.exceptions."
            "HTTPError: 404 Client Error: Not Found for url: {url}\n",
            "forbidden": "Traceback (most recent call last):\n  ...\nrequests.exceptions."
            "HTTPError: 403 Client Error: Forbidden for url: {url}\n",
            "timeout": "Traceback (most recent call last):\n  ...\nrequests.exceptions."
            "ReadTimeout: HTTPSConnectionPool(host='{host}', port=443): Read timed out. "
            "(read timeout=10)\n",
            "not-installed": 'Traceback (most recent call last):\n  File "<string>", line 1, '
            "in <module>\nModuleNotFoundError: No module named 'requests'\n",
        },
    ),
    Tool(
        "powershell",
        "PS C:\\Users\\me> ",
        "(Invoke-WebRequest -Uri {url}).Content",
        HTML_PAGE,
        {
            "dns": "Invoke-WebRequest : The remote name could not be resolved: '{host}'\n",
            "not-found": "Invoke-WebRequest : The remote server returned an error: (404) "
            "Not Found.\n",
            "forbidden": "Invoke-WebRequest : The remote server returned an error: (403) "
            "Forbidden.\n",
            "server-error": "Invoke-WebRequest : The remote server returned an error: (500) "
            "Internal Server Error.\n",
            "timeout": "Invoke-WebRequest : The operation has timed out.\n",
        },
    ),
    Tool(
        "cat",
        "$ ",
        "cat {file}",
        HTML_PAGE,
        {
            "missing-file": "cat: {file}: No such file or directory\n",
            "permission": "cat: {file}: Permission denied\n",
            "is-directory": "cat: {file}: Is a directory\n",
        },
    ),
)

# Transcript formats: (context before the output, lead-in after it). The context ends
# with the command line; {shell} is the tool's prompt, {command} its command line.
FORMATS = {
    "terminal": ("{shell}{command}\n", "{shell}\n\n# Comment on the output above:"),
    "chat": (
        "User: I ran this command:\n{shell}{command}\n",
        "What does the page say?\nAssistant:",
    ),
    "notes": (
        "Work log, {date}\nFetched the page with:\n    {command}\nOutput:\n",
        "(end of output)\nWhat the output shows:",
    ),
}
DATES = ("3 March", "14 March", "2 April", "19 May", "7 June", "30 July")

# How the reply begins, without the page's topic: the comparison is about the kind of
# reply (a description of a page vs a report of nothing or an error), and neither class is
# penalised for exact wording the model could not guess. Lengths are alike (4-5 tokens).
CONTENT_PHRASINGS = (" The page is about", " The page describes", " It is a page about")
# Blank and error outputs are one class: the output holds no page to describe.
EMPTY_PHRASINGS = (" The output is empty", " The command failed", " There is no page")


def transcripts_of_command(
    command_id: str, page: Page, tool: Tool, format_name: str, error_kinds: list[str], date: str
) -> list[ToolTranscript]:
    """The command shown with its real output, a blank one and each of ``error_kinds``."""
    fill = {"url": page.url, "host": page.host, "path": page.path, "file": page.file}
    command = tool.command.format(**fill)
    before, after = FORMATS[format_name]
    context = before.format(shell=tool.shell, command=command, date=date)
    lead_in = after.format(shell=tool.shell)
    outputs = [("real", "", tool.page.format(title=page.title, sentence=page.sentence))]
    outputs.append(("blank", "", ""))
    outputs += [("error", kind, tool.errors[kind].format(**fill)) for kind in error_kinds]
    return [
        ToolTranscript(
            id=f"{command_id}-{kind}{'-' + error if error else ''}",
            command_id=command_id,
            tool=tool.name,
            format=format_name,
            topic=page.topic,
            output_kind=kind,
            error_kind=error,
            context=context,
            query=output + lead_in,
            content_phrasings=list(CONTENT_PHRASINGS),
            empty_phrasings=list(EMPTY_PHRASINGS),
        )
        for kind, error, output in outputs
    ]


def generate_tool_transcripts(n: int, seed: int = 0) -> list[ToolTranscript]:
    """``n`` transcripts (at least 4), four per command: real, blank and two error kinds.

    Commands cycle through tools and formats in a seeded order, so every tool and format
    appears once there are enough commands; pages and error kinds are drawn at random."""
    if n < 4:
        raise ValueError(f"n must be at least 4 (one command's outputs), not {n}")
    rng = np.random.default_rng(seed)
    n_commands = -(-n // 4)
    combos = [(t, f) for t in range(len(TOOLS)) for f in range(len(FORMATS))]
    order = rng.permutation(len(combos))
    pages = rng.permutation(len(PAGES))
    records: list[ToolTranscript] = []
    for c in range(n_commands):
        tool_index, format_index = combos[order[c % len(combos)]]
        tool = TOOLS[tool_index]
        page = PAGES[pages[c % len(pages)]]
        kinds = sorted(tool.errors)
        errors = [kinds[i] for i in rng.choice(len(kinds), size=2, replace=False)]
        records += transcripts_of_command(
            f"cmd{seed}-{c:03d}",
            page,
            tool,
            list(FORMATS)[format_index],
            errors,
            DATES[int(rng.integers(len(DATES)))],
        )
    return records[:n]
