"""The briefing as a message: its sections (`Section`, `Image`), the `Briefing` with its e-mail form, and the
rendering of the sections twice, as plain text and as HTML, so the two parts never disagree."""

from __future__ import annotations

import base64
import html as _html
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid


@dataclass
class Image:
    cid: str  # Content-ID without angle brackets
    filename: str
    data: bytes  # PNG


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)
    image: str | None = None  # cid of a plot shown under the section
    alert: bool = False  # shown in red in the HTML


@dataclass
class Briefing:
    subject: str
    text: str
    html: str
    attachments: list[Image]
    sections: list[Section] = field(default_factory=list)
    date: str = ""

    def to_message(self, sender: str, to: str) -> EmailMessage:
        """multipart/alternative: text, then HTML with the plots as multipart/related cid: parts."""
        msg = EmailMessage()
        msg["Subject"] = self.subject
        msg["From"] = sender
        if to:
            msg["To"] = to
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain=socket.gethostname() or "mothbrain")
        msg.set_content(self.text)
        msg.add_alternative(self.html, subtype="html")
        html_part = msg.get_payload()[1]
        for img in self.attachments:
            html_part.add_related(img.data, maintype="image", subtype="png", cid=f"<{img.cid}>", filename=img.filename)
        return msg

    def standalone_html(self) -> str:
        """The HTML with the plots inlined as data: URIs, for a browser (cid: only works in mail)."""
        out = self.html
        for img in self.attachments:
            out = out.replace(f"cid:{img.cid}", "data:image/png;base64," + base64.b64encode(img.data).decode())
        return out


def render_text(header: str, sections: list[Section]) -> str:
    out = [header, "=" * len(header), ""]
    for s in sections:
        out.append(("!! " if s.alert else "") + s.title)
        out.extend("  " + ln for ln in s.lines)
        if s.table:
            rows = [s.headers] + s.table
            widths = [min(max(len(str(r[i])) for r in rows), 40) for i in range(len(s.headers) - 1)]
            for r in rows:
                out.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + str(r[-1]))
        out.append("")
    return "\n".join(out)


def render_html(header: str, sections: list[Section]) -> str:
    e = _html.escape
    out = [
        '<html><body style="font-family: -apple-system, Segoe UI, sans-serif; font-size: 14px; color: #222">',
        f'<h2 style="margin-bottom: 4px">{e(header)}</h2>',
    ]
    for s in sections:
        color = "#b00020" if s.alert else "#333"
        out.append(f'<h3 style="color: {color}; margin: 18px 0 4px">{e(s.title)}</h3>')
        for ln in s.lines:
            out.append(f'<div style="white-space: pre-wrap">{e(ln)}</div>')
        if s.table:
            out.append('<table style="border-collapse: collapse; font-size: 13px">')
            out.append(
                "<tr>"
                + "".join(
                    f'<th style="text-align: left; padding: 2px 10px 2px 0; border-bottom: 1px solid #ccc">{e(h)}</th>'
                    for h in s.headers
                )
                + "</tr>"
            )
            for row in s.table:
                bad = any(c in ("failed", "killed", "interrupted", "refused") for c in row)
                style = ' style="color: #b00020"' if bad else ""
                out.append(
                    f"<tr{style}>"
                    + "".join(f'<td style="padding: 2px 10px 2px 0; vertical-align: top">{e(str(c))}</td>' for c in row)
                    + "</tr>"
                )
            out.append("</table>")
        if s.image:
            out.append(f'<div><img src="cid:{s.image}" alt="{e(s.title)}" style="max-width: 600px"></div>')
    out.append("</body></html>")
    return "\n".join(out)
