"""Pure AMI framing: Message semantics, action encoding, header injection refusal, parser limits."""

from __future__ import annotations

import pytest

from callcontrol.asterisk.ami_wire import (
    MAX_MESSAGE_LINES,
    AMIProtocolError,
    Message,
    MessageParser,
    encode_action,
    headers_from,
    parse_banner,
    parse_line,
    parse_messages,
)


def test_login_bytes_match_transcript() -> None:
    headers = [("Username", "ctl"), ("Secret", "ctlsecret"), ("Events", "on")]
    wire = encode_action("Login", "ami-login-4", headers)
    assert wire == (b"Action: Login\r\nActionID: ami-login-4\r\nUsername: ctl\r\nSecret: ctlsecret\r\n"
                    b"Events: on\r\n\r\n")


def test_originate_with_repeated_variables_keeps_order() -> None:
    pairs = headers_from({"Channel": "Local/102@facility-phones", "Async": True,
                          "Variable": ["A=1", "B=two words"], "Skipped": None, "Priority": 1})
    wire = encode_action("Originate", "x-1", pairs)
    assert wire == (b"Action: Originate\r\nActionID: x-1\r\nChannel: Local/102@facility-phones\r\n"
                    b"Async: true\r\nVariable: A=1\r\nVariable: B=two words\r\nPriority: 1\r\n\r\n")


@pytest.mark.parametrize("value", ["x\r\nAction: Hangup", "x\n", "x\r", "a\x00"])
def test_header_injection_refused(value: str) -> None:
    with pytest.raises(ValueError, match="inject"):
        encode_action("Setvar", "id-1", [("Variable", "X"), ("Value", value)])
    with pytest.raises(ValueError):
        encode_action("Setvar\r\nAction: Hangup", "id-1")
    with pytest.raises(ValueError):
        encode_action("Setvar", "id\n1")


@pytest.mark.parametrize("key", ["", "Bad Key", "X:Y", "A\r\nB"])
def test_bad_header_names_refused(key: str) -> None:
    with pytest.raises(ValueError):
        encode_action("Ping", "id-1", [(key, "v")])


def test_message_is_case_insensitive_ordered_and_repeatable() -> None:
    [msg] = parse_messages(
        b"Event: VarSet\r\nChannel: none\r\nVariable: A\r\nvariable: B\r\nRequestType: Action: Foo\r\n"
        b"AccountCode: \r\n\r\n")
    assert msg.is_event and not msg.is_response and msg.name == "VarSet"
    assert msg["VARIABLE"] == "A" and msg.get_all("Variable") == ["A", "B"]
    assert msg["requesttype"] == "Action: Foo"  # only the first colon splits
    assert msg["AccountCode"] == "" and "accountcode" in msg and "Missing" not in msg
    assert list(msg) == ["Event", "Channel", "Variable", "RequestType", "AccountCode"]
    assert msg.get("Nope") is None and msg.get_all("Nope") == []
    assert msg.to_bytes().count(b"Variable: ") == 1 and b"variable: B" in msg.to_bytes()


def test_response_vs_event() -> None:
    [resp, event] = parse_messages(
        b"Response: Success\r\nActionID: a-1\r\nMessage: ok\r\n\r\n"
        b"Event: OriginateResponse\r\nActionID: a-1\r\nResponse: Failure\r\n\r\n")
    assert resp.is_response and resp.action_id == "a-1" and resp.name == "Success"
    assert event.is_event and not event.is_response and event.name == "OriginateResponse"


def test_parser_tolerates_blank_lines_and_keeps_odd_lines() -> None:
    parser = MessageParser()
    assert parser.feed(b"\r\n") is None  # stray blank line between messages
    assert parser.feed(b"Response: Follows\r\n") is None
    assert parser.feed(b"some raw output line\r\n") is None
    msg = parser.feed(b"\r\n")
    assert msg is not None and msg.get_all("Output") == ["some raw output line"]
    assert parse_line(b"Key:value\n") == ("Key", "value")


def test_parser_limits_message_size() -> None:
    parser = MessageParser()
    with pytest.raises(AMIProtocolError):
        for i in range(MAX_MESSAGE_LINES + 1):
            parser.feed(b"K%d: v\r\n" % i)


def test_banner() -> None:
    assert parse_banner(b"Asterisk Call Manager/11.0.0\r\n") == "11.0.0"
    with pytest.raises(AMIProtocolError):
        parse_banner(b"SSH-2.0-OpenSSH\r\n")


def test_message_equality_and_construction() -> None:
    a = Message([("Response", "Success"), ("ActionID", "1")])
    assert a == Message([("Response", "Success"), ("ActionID", "1")])
    assert a != Message([("ActionID", "1"), ("Response", "Success")])
    assert dict(a) == {"Response": "Success", "ActionID": "1"}
