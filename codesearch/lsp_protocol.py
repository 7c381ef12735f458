"""LSP front door, part 3: protocol hardening (malformed messages, requests before initialize or after shutdown)."""

from __future__ import annotations

import logging
from typing import Any

import attrs
from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcServerNotInitialized,
)
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger(__name__)

#: LSP error code for a well-formed request that failed (index or model unusable).
REQUEST_FAILED = -32803
#: The custom search request (its params stay plain JSON).
SEARCH_METHOD = "codesearch/search"


class RequestFailed(JsonRpcException):
    """A well-formed request that could not be answered (LSP ``RequestFailed``)."""

    CODE = REQUEST_FAILED



# --------------------------------------------------------------------------------------------------
# Protocol hardening


@attrs.define
class _RawRequest:
    """A request whose params stay plain JSON (our custom method)."""

    id: int | str
    method: str
    jsonrpc: str
    params: Any = None


@attrs.define
class _Rejected:
    """A request that could not be read; answered with ``error``."""

    id: int | str | None
    error: JsonRpcException
    method: str = ""


class CodesearchProtocol(LanguageServerProtocol):
    """pygls' protocol, made to answer every malformed request with a JSON-RPC error.

    pygls 2.1 drops some bad messages silently (a request whose params fail validation, requests
    after ``shutdown``) and answers others with nothing, which leaves a client waiting forever.
    """

    def get_message_type(self, method: str) -> Any:  # type: ignore[override]
        """Custom methods keep their params as plain JSON; LSP methods use lsprotocol's types."""
        if method == SEARCH_METHOD:
            return _RawRequest
        return super().get_message_type(method)

    def structure_message(self, data: dict[str, Any]) -> Any:
        """Structure a message; a request that cannot be structured becomes a _Rejected."""
        if "jsonrpc" not in data:
            return data
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if "method" in data and "id" in data:
                msg_id = data["id"] if isinstance(data["id"], int | str) and not isinstance(data["id"], bool) else None
                cause = exc.__cause__
                detail = f"invalid params for {data['method']!r}" + (f": {_short(cause)}" if cause else "")
                return _Rejected(msg_id, JsonRpcInvalidParams(detail), str(data["method"]))
            raise

    def handle_message(self, message: Any) -> None:
        """Dispatch a message, answering what pygls would drop."""
        if isinstance(message, _Rejected):
            self._send_response(message.id, error=message.error.to_response_error())  # type: ignore[arg-type]
            return
        if not attrs.has(type(message)):
            # Valid JSON but not a JSON-RPC message (no "jsonrpc", an array, a number...).
            msg_id = message.get("id") if isinstance(message, dict) else None
            if not isinstance(msg_id, int | str) or isinstance(msg_id, bool):
                msg_id = None
            if not (isinstance(message, dict) and "method" in message and "id" not in message):
                self._send_response(msg_id, error=JsonRpcInvalidRequest(  # type: ignore[arg-type]
                    "not a JSON-RPC 2.0 request (need jsonrpc: \"2.0\", method and id)").to_response_error())
            return
        method = getattr(message, "method", None)
        is_request = method is not None and hasattr(message, "id")
        if is_request and (not isinstance(message.id, int | str) or isinstance(message.id, bool)):
            self._send_response(None, error=JsonRpcInvalidRequest(  # type: ignore[arg-type]
                "the id of a request must be a number or a string").to_response_error())
            return
        if getattr(message, "jsonrpc", None) != self.VERSION:
            if is_request:
                self._send_response(message.id, error=JsonRpcInvalidRequest(
                    "jsonrpc must be \"2.0\"").to_response_error())
            return
        if is_request and self._shutdown and method != types.EXIT:
            self._send_response(message.id, error=JsonRpcInvalidRequest(
                "the server is shutting down").to_response_error())
            return
        server = self._server
        # The codesearch server marks itself initialized once `initialize` was handled.
        if getattr(server, "initialized", True) is False and method is not None \
                and method not in (types.INITIALIZE, types.EXIT):
            if is_request:
                self._send_response(message.id, error=JsonRpcServerNotInitialized(
                    "send initialize first").to_response_error())
            return
        super().handle_message(message)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
