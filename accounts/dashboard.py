"""The dashboard's getting-started steps and panels, contributed by every app.

Higher apps register here in their AppConfig.ready(), so that the dashboard (in the lowest
app) can show what they know without importing them:

    dashboard_steps.register(DashboardStep(order=30, title=..., is_done=lambda ws: ...))
    dashboard_panels.register("sending:dashboard_panel")
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from accounts.models import Workspace


@dataclass(frozen=True)
class DashboardStep:
    order: int
    key: str
    title: str
    text: str
    url_name: str
    action: str
    is_done: Callable[[Workspace], bool] = field(compare=False)


class _Steps:
    def __init__(self):
        self._steps: dict[str, DashboardStep] = {}

    def register(self, step: DashboardStep) -> None:
        self._steps[step.key] = step  # registering again replaces (ready() may run twice)

    def for_workspace(self, workspace: Workspace) -> list[dict]:
        return [
            {
                "title": step.title,
                "text": step.text,
                "url_name": step.url_name,
                "action": step.action,
                "done": step.is_done(workspace),
            }
            for step in sorted(self._steps.values(), key=lambda s: s.order)
        ]


class _Panels:
    """URL names of workspace fragments the dashboard loads with hx-get (order kept)."""

    def __init__(self):
        self.url_names: list[str] = []

    def register(self, url_name: str) -> None:
        if url_name not in self.url_names:
            self.url_names.append(url_name)


dashboard_steps = _Steps()
dashboard_panels = _Panels()
