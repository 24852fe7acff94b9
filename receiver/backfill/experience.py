"""Experience's unsubscribed list (``retrieve-opt-out``), which ``receiver reconcile`` reads back.

``GET base_url + retrieve_path?since=YYYY-MM-DD`` with ``Authorization: Bearer <partner>:<hotel>``
answers ``{"recipients": [{"email", "phone", <state>: "YYYY-MM-DD HH:MM:SS", …}], "next_page_url"}``
(crm-apis.md, section 1), 250 recipients a page. ``next_page_url`` (absent or null on the last
page) is followed as given, on our scheme and port and never on another host (``ListClient.url``),
with ``since`` added when it lacks it: the vendor's published sample drops it. A ``next_page_url``
naming a page already read in this pass is refused (a loop would never end). One list; a page's
position is the ``next_page_url`` it was read from (a cursor saved as a bare URL, before reconcile
was a backfill, starts its pass again from its ``since``: harmless, every state is deduplicated).
A recipient is yielded as read, since one carries several states with their times:
``sources/experience_sync.py`` turns a page into signals.
"""

from collections.abc import Iterator
from datetime import date
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from .pages import ListClient, Page, Position

PROVIDER = "experience"
LIST = "retrieve-opt-out"


class ExperienceBackfill:
    def __init__(self, client: ListClient, retrieve_path: str):
        self.client = client
        self.retrieve_path = retrieve_path

    def pages(self, since: date, resume: Position | None = None) -> Iterator[Page[dict]]:
        """The list's pages from ``since`` (or from ``resume``), one GET per page, in order."""
        link = resume.page if resume and resume.list == LIST and resume.page else None
        seen = set()
        while True:
            seen.add(link)
            position = Position(LIST, link or "")
            recipients, link = self._fetch(since, link)
            if link is not None and link in seen:
                raise self.client.bad_page("next_page_url repeats an earlier page")
            yield Page(position, Position(LIST, link) if link else None, recipients)
            if link is None:
                return

    def _fetch(self, since: date, link: str | None) -> tuple[list[dict], str | None]:
        if link:
            answer = self.client.get_json(self._with_since(link, since))
        else:
            answer = self.client.get_json(self.retrieve_path, params={"since": since.isoformat()})
        recipients = answer.get("recipients", []) if isinstance(answer, dict) else None
        if not isinstance(recipients, list):
            raise self.client.bad_page("no recipients list")
        link = answer.get("next_page_url") or None
        if link is not None and not isinstance(link, str):
            raise self.client.bad_page("next_page_url is not a URL")
        return [r for r in recipients if isinstance(r, dict)], link

    def _with_since(self, link: str, since: date) -> str:
        """``next_page_url`` as a full URL (a path is on the API host), with ``since`` added if missing."""
        url = urlsplit(urljoin(self.client.base_url + "/", link))
        query = parse_qsl(url.query, keep_blank_values=True)
        if not any(key == "since" for key, _ in query):
            query.append(("since", since.isoformat()))
        return urlunsplit((url.scheme, url.netloc, url.path, urlencode(query), ""))
