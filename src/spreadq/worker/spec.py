"""WorkerSpec: everything a worker runs, frozen when its :class:`~spreadq.App` starts.

An :class:`~spreadq.App` is where a queue's handlers, rules, codecs, middleware and
hooks are registered; :meth:`App.spec() <spreadq.App.spec>` freezes it and builds one
:class:`WorkerSpec` from it. The runtime and each session's dispatcher read only the
spec, never the app: what a worker runs cannot change under it, and a test or a
benchmark can serve a spec without an app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spreadq.codecs import Codec, CodecRegistry, JsonCodec, RawCodec
from spreadq.context import Context
from spreadq.errors import PayloadError
from spreadq.handlers import AnyHandlerSpec
from spreadq.middleware import CallNext, FailureHook
from spreadq.queue.periodic import Schedule
from spreadq.queue.rules import Rule

__all__ = ["PreparedHandler", "WorkerSpec"]


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What one worker serves, frozen.

    Attributes:
        queue: the queue name (for logs and contexts).
        work_group: the WORK group (its members are exactly the consumers).
        feedback_group: the FEEDBACK group (ACK, VIEW, DRAIN and HELLO go there too).
        name: the private name for the worker's daemon connections (None: the
            daemon's choice).
        handlers: each handler ready to run, by kind.
        rule: the ownership rule (the same at every consumer of the queue).
        ordered_keys: run the jobs of one key one at a time, in delivery order (the
            rule declares it: :func:`~spreadq.queue.rules.keeps_key_order`).
        failure_hooks: ``async hook(ctx, error)`` called after a job's last failure, in
            registration order.
        state: what the app's lifespan yielded, given to handlers as ``ctx.state``
            (None without a lifespan).
        dead_letter: the dead-letter queue jobs that fail for good are put on (None:
            none).
        schedules: the periodic jobs (``@app.periodic``), each naming a handler kind.
    """

    queue: str
    work_group: str
    feedback_group: str
    name: str | None
    handlers: Mapping[str, PreparedHandler] = field(repr=False)
    rule: Rule
    ordered_keys: bool = False
    failure_hooks: tuple[FailureHook, ...] = field(default=(), repr=False)
    state: object = field(default=None, repr=False)
    dead_letter: str | None = None
    schedules: tuple[Schedule, ...] = ()


@dataclass(frozen=True, slots=True)
class PreparedHandler:
    """A handler ready to run: its spec, its frozen middleware chain and its codecs.

    Built by :meth:`App.freeze <spreadq.App.freeze>`; the dispatcher looks one up by
    kind for each job it runs and calls :meth:`run` (or the three steps separately)
    inside its own attempt, timeout and cancel handling.

    Attributes:
        spec: the handler's declaration.
        chain: middleware (outermost first) around ``spec.endpoint``.
        payload_codec: decodes payload bytes to ``spec.payload_type``.
        result_codec: encodes the result (``spec.result_type``) to bytes.
        codecs: the app's codecs, for payloads whose envelope names another codec.
        direct: the handler function itself, when nothing between it and the runner
            takes the context (no middleware, no context parameter, not run in a
            thread): the runner then calls ``direct(payload)`` and builds a
            :class:`~spreadq.context.Context` only if the job fails or is retried.
    """

    spec: AnyHandlerSpec
    chain: CallNext = field(repr=False)
    payload_codec: Codec
    result_codec: Codec
    codecs: CodecRegistry = field(repr=False)
    direct: Callable[[Any], Awaitable[object]] | None = field(default=None, repr=False)
    _none: list[bytes] = field(default_factory=list, init=False, repr=False, compare=False)
    _as_is: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # a bytes payload carried raw is the payload as delivered: nothing to validate
        as_is = type(self.payload_codec) is RawCodec and self.spec.payload_type is bytes
        object.__setattr__(self, "_as_is", as_is)

    def decode_payload(
        self, data: bytes | memoryview, *, codec: str | None = None, job: object = None
    ) -> object:
        """Decode and validate the job's payload bytes as the handler's payload type.

        Args:
            data: the payload as delivered (a memoryview slice is copied once here).
            codec: the codec the envelope names, when it names one; the handler's own
                payload codec when None.
            job: the job's reference, for the error message.

        Raises:
            PayloadError: an unknown codec, or bytes that do not decode as the payload
                type (naming ``job``).
        """
        decoder = self.payload_codec
        if codec is not None and codec != decoder.name:
            found = self.codecs.get(codec)
            if found is None:
                raise PayloadError(f"{self.spec.kind}: unknown codec {codec!r}", job=job)
            decoder = found
        raw = data.tobytes() if isinstance(data, memoryview) else data
        if self._as_is and decoder is self.payload_codec:
            return raw
        try:
            return decoder.decode(raw, self.spec.payload_adapter)
        except PayloadError as error:
            if job is None:
                raise
            raise PayloadError(f"{self.spec.kind}: {error}", job=job) from error

    def encode_result(self, result: object, *, job: object = None) -> bytes:
        """Encode the handler's result.

        Raises:
            PayloadError: the result is not serialisable as the result type.
        """
        if result is None and self._none:  # what most handlers of side effects return
            return self._none[0]
        try:
            encoded = self.result_codec.encode(result, self.spec.result_adapter)
        except PayloadError as error:
            if job is None:
                raise
            raise PayloadError(f"{self.spec.kind}: result: {error}", job=job) from error
        if result is None and type(self.result_codec) is JsonCodec:  # the same bytes always
            self._none.append(encoded)
        return encoded

    async def run(
        self, ctx: Context, data: bytes | memoryview, *, codec: str | None = None
    ) -> bytes:
        """Decode ``data``, run the chain with ``ctx``, return the encoded result.

        Raises:
            PayloadError: the payload or the result fails its codec.
            Exception: whatever the handler or a middleware raises, unchanged.
        """
        payload = self.decode_payload(data, codec=codec, job=ctx.job)
        result = await self.chain(ctx, payload)
        return self.encode_result(result, job=ctx.job)
