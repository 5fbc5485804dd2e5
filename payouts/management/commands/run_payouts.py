from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from payouts import services


class Command(BaseCommand):
    help = (
        "Run the nightly payouts now (one at a time: a second concurrent run does nothing);"
        " --resume-only finishes unfinished payouts and starts none."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--resume-only", action="store_true")
        parser.add_argument(
            "--user", action="append", dest="user_ids", help="only this recipient (repeatable)"
        )

    def handle(
        self,
        *args: Any,
        resume_only: bool = False,
        user_ids: list[str] | None = None,
        **options: Any,
    ) -> None:
        if resume_only:
            result: Any = {"changed": services.resume_payouts(user_ids=user_ids)}
        else:
            result = services.run_scheduled_payouts(user_ids=user_ids)
        self.stdout.write(json.dumps(result, sort_keys=True))
