"""Group commit for the SNS webhook: verified notifications handed over by requests (on an event loop,
``submit``, or from any thread, ``enqueue``) are stored and applied by one writer thread per process,
whatever is waiting in one transaction (mailer.feedback.apply.receive_batch_stepwise)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from mailer.errors import InputError, is_database_outage
from mailer.feedback.apply import receive_batch_stepwise
from mailer.feedback.results import FeedbackResult
from mailer.feedback.sns import SnsMessage
from mailer.observability.metrics import count_feedback
from mailer.sending.health import HealthLimits
from mailer.services.env import AppEnv

__all__ = ["FeedbackWriter"]


Answer = FeedbackResult | BaseException


@dataclass
class _Pending:
    message: SnsMessage
    done: Future[FeedbackResult] | asyncio.Future[FeedbackResult]
    loop: asyncio.AbstractEventLoop | None = None  # the event loop of an asyncio future


class FeedbackWriter:
    """Group commit for the webhook: request threads hand over verified Notifications and wait; one writer
    thread stores and applies whatever is waiting, up to ``max_batch`` at a time, in one transaction
    (mailer.feedback.apply.receive_batch_stepwise), then answers each. Under load a few hundred
    notifications share a commit instead of paying one each; alone, one waits for nothing.

    A message's future is done once it is committed (the webhook answers 200 only then), or fails with
    its UnusablePayload, or with the database error that failed its group (the webhook answers 503 and
    SNS delivers it again).
    """

    def __init__(self, env: AppEnv, *, max_batch: int = 200, timeout: float = 30.0) -> None:
        self.env = env
        self.max_batch = max_batch
        self.timeout = timeout
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="feedback-writer", daemon=True)
        self._thread.start()

    def enqueue(self, message: SnsMessage) -> Future[FeedbackResult]:
        """Hand a verified Notification over; the future is done once it is committed (or failed)."""
        done: Future[FeedbackResult] = Future()
        self._queue.put(_Pending(message, done))
        return done

    def submit(self, message: SnsMessage) -> asyncio.Future[FeedbackResult]:
        """``enqueue`` for a coroutine, called on its event loop: the futures of a group are settled
        together, with one wake-up of the loop (a future per message woke it once per message)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[FeedbackResult] = loop.create_future()
        self._queue.put(_Pending(message, done, loop))
        return done

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=self.timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(nxt)
            waiting: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[FeedbackResult], Answer]]] = {}
            for pending, answer in zip(group, self._apply(group), strict=True):
                if isinstance(answer, FeedbackResult):
                    count_feedback(answer.events, duplicate=answer.duplicate)
                if isinstance(pending.done, Future):
                    _settle(pending.done, answer)
                else:
                    assert pending.loop is not None
                    waiting.setdefault(pending.loop, []).append((pending.done, answer))
            for loop, answers in waiting.items():
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                    loop.call_soon_threadsafe(_settle_on_loop, answers)

    def _apply(self, group: list[_Pending]) -> list[Answer]:
        """The group's answers; when the group fails for a reason other than the database being away,
        each message is tried on its own, so one that cannot be stored fails alone."""
        settings = self.env.settings
        try:
            answers: list[Answer] = list(
                receive_batch_stepwise(
                    [p.message for p in group],
                    sessions=self.env.sessions,
                    now=self.env.now(),
                    soft_bounce_limit=settings.soft_bounce_limit,
                    health=HealthLimits.from_settings(settings),
                )
            )
        except Exception as exc:  # the database, or a message it refuses (a NUL in an id, ...)
            if is_database_outage(exc) or len(group) == 1:
                return [_refused(exc) for _ in group]
            return [answer for pending in group for answer in self._apply([pending])]
        return answers


def _refused(exc: Exception) -> BaseException:
    """A lone message the database refuses (not an outage) is bad input: a retry cannot fix it."""
    if is_database_outage(exc) or not isinstance(exc, DBAPIError | UnicodeError):
        return exc
    cause = type(exc.orig if isinstance(exc, DBAPIError) else exc).__name__
    return InputError(f"feedback: the message cannot be stored ({cause})")


def _settle_on_loop(answers: list[tuple[asyncio.Future[FeedbackResult], Answer]]) -> None:
    """``_settle`` for asyncio futures, on their loop."""
    for done, answer in answers:
        if done.done():  # its request gave up waiting
            continue
        if isinstance(answer, BaseException):
            done.set_exception(answer)
        else:
            done.set_result(answer)


def _settle(done: Future[FeedbackResult], answer: Answer) -> None:
    """Give a waiting request its answer; one that gave up waiting (cancelled its future) gets none."""
    if not done.set_running_or_notify_cancel():
        return
    if isinstance(answer, BaseException):
        done.set_exception(answer)
    else:
        done.set_result(answer)
