"""The transport's trace hook on real frames (websockets' sans-I/O protocol, no socket needed)."""

from __future__ import annotations

from typing import Any

from websockets.frames import Close, Frame, Opcode
from websockets.protocol import Protocol, Side, State

from loadkit.probe.trace import TraceRecorder
from loadkit.transport.tracing import FrameLog


def traced() -> tuple[Protocol, list[tuple[str, dict[str, Any]]], TraceRecorder]:
    seen: list[tuple[str, dict[str, Any]]] = []
    rec = TraceRecorder(classify=lambda data: "auth_ok")

    def hook(event: str, fields: dict[str, Any]) -> None:
        seen.append((event, fields))
        rec.transport_hook(event, fields)

    return Protocol(Side.CLIENT, state=State.OPEN, logger=FrameLog(hook)), seen, rec


def server(frame: Frame) -> bytes:
    return frame.serialize(mask=False)


def test_a_servers_ping_and_the_librarys_pong_are_both_traced():
    proto, seen, rec = traced()
    proto.receive_data(server(Frame(Opcode.PING, b"hb-1")))
    assert seen == [("frame_received", {"opcode": "ping", "data": b"hb-1", "fin": True}),
                    ("frame_sent", {"opcode": "pong", "data": b"hb-1", "fin": True})]
    pong = rec.exported()[1]
    assert pong["role"] == "automatic answer to a ping" and pong["payload"] == "hb-1"


def test_text_frames_and_the_close_handshake_are_traced_with_code_and_reason():
    proto, seen, rec = traced()
    rec.expect("auth")
    proto.send_text(b'{"type":"auth"}')
    proto.receive_data(server(Frame(Opcode.TEXT, b'{"type":"auth_ok"}')))
    proto.receive_data(server(Frame(Opcode.CLOSE, Close(4003, "forbidden").serialize())))
    names = [(e, f["opcode"]) for e, f in seen]
    assert names == [("frame_sent", "text"), ("frame_received", "text"), ("frame_received", "close"),
                     ("frame_sent", "close")]  # the library's echo
    out = rec.exported()
    assert out[0]["role"] == "auth" and out[0]["json"] == {"type": "auth"}
    assert out[1]["kind"] == "auth_ok"
    assert (out[2]["code"], out[2]["reason"]) == (4003, "forbidden")
    assert (out[3]["code"], out[3]["reason"]) == (4003, "forbidden")
