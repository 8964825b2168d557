"""What higher apps set up for a new workspace.

Accounts sits below every other app, so workspace_create cannot call them: each registers a
callable taking `workspace=` in its AppConfig.ready(), run in workspace_create's
transaction (sending gives the workspace its starting quotas):

    workspace_provisioners.register(sending_policy_create)
"""

from collections.abc import Callable, Iterator
from typing import Any

Provisioner = Callable[..., Any]  # called as provisioner(workspace=workspace)


class _Provisioners:
    def __init__(self):
        self.provisioners: list[Provisioner] = []

    def register(self, provisioner: Provisioner) -> None:
        if provisioner not in self.provisioners:
            self.provisioners.append(provisioner)

    def __iter__(self) -> Iterator[Provisioner]:
        return iter(self.provisioners)


workspace_provisioners = _Provisioners()
