"""Fenced code blocks of a Markdown document, for tests that run a document's examples as written."""

import re
from dataclasses import dataclass
from pathlib import Path

_HEADING = re.compile(r"^## (.+)$", re.M)
# A fence of three backticks opens with an info string ("sh", "sh run") and closes on a line of its own.
_BLOCK = re.compile(r"^```(?P<info>[^`\n]*)\n(?P<body>.*?)^```$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    section: str  # the `## ` heading it sits under, "" before the first
    info: str  # the fence's info string: "sh", "sh run", ...
    body: str

    @property
    def lines(self) -> list[str]:
        """Its commands: lines that are not blank and not comments, continuation lines joined."""
        joined = self.body.replace("\\\n", " ")
        return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of the document, in order, with its section and info string."""
    text = path.read_text()
    sections = [(m.start(), m.group(1).strip()) for m in _HEADING.finditer(text)]
    blocks = []
    for match in _BLOCK.finditer(text):
        section = next((name for at, name in reversed(sections) if at < match.start()), "")
        blocks.append(Block(section, match["info"].strip(), match["body"]))
    return blocks
