"""Text from outside (link parameters, typed boxes, file names, messages that quote them) inside Markdown.

st.error, st.warning, st.info, st.caption and st.markdown render Markdown: `[Click here](https://...)` in a link's
`?model=` would draw a live link in the page and `![x](http://...)` would make the browser fetch an outside
address. Every ASCII punctuation mark is backslash-escaped (CommonMark shows an escaped mark as itself), which also
stops Streamlit's `:color[...]` and `:icon:` directives and `$...$` maths; line breaks become spaces, so the text
cannot start a heading or a list. Bare addresses (http://..., www...., a@b.c) are linked by GFM after escapes are
resolved, so an invisible WORD JOINER (U+2060) goes between "http" (mailto, xmpp) and ":", "www" and ".", and before "@"."""
from __future__ import annotations

import re

_PUNCT = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")
_BREAKS = re.compile(r"[\r\n\t\f\v\u2028\u2029]+")
_AUTOLINK = re.compile(r"(?i)((?:https?|mailto|xmpp)(?=:)|www(?=\.)|(?=@))")
JOINER = "\u2060"


def plain(text: object) -> str:
    """`text` as Markdown that shows exactly these characters and nothing else (no link, picture or format)."""
    return _PUNCT.sub(r"\\\1", _AUTOLINK.sub(lambda m: m.group() + JOINER, _BREAKS.sub(" ", str(text))))


_CODE = re.compile(r"`[^`\r\n]+`")


def message(text: object) -> str:
    """A message of the engine (which may quote what the user typed) as Markdown: its `command` spans stay code
    (nothing inside a code span is a link), everything else is shown as plain text."""
    s, out, at = str(text), [], 0
    for m in _CODE.finditer(s):
        out += [plain(s[at:m.start()]), m.group()]
        at = m.end()
    return "".join(out + [plain(s[at:])])
