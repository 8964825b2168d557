"""What higher apps add to a contact's timeline.

Contacts sits below sending and tracking, so it cannot read their tables: each registers a
source in its AppConfig.ready(), a callable `(contact) -> list[TimelineEvent]` that runs a
bounded number of queries whatever the contact's history:

    timeline_sources.register(delivery_timeline_events)
"""

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from contacts.models import Contact


@dataclass
class TimelineEvent:
    at: dt.datetime
    kind: str
    title: str
    detail: str = ""


TimelineSource = Callable[[Contact], list[TimelineEvent]]


class _TimelineSources:
    def __init__(self):
        self.sources: list[TimelineSource] = []

    def register(self, source: TimelineSource) -> None:
        if source not in self.sources:
            self.sources.append(source)

    def __iter__(self) -> Iterator[TimelineSource]:
        return iter(self.sources)


timeline_sources = _TimelineSources()
