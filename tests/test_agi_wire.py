"""Pure FastAGI wire functions: command encoding/quoting/validation, reply assembly, env block parsing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcontrol.asterisk.agi_wire import (
    HANGUP_LINE,
    MAX_BLOCK_LINES,
    MAX_COMMAND_BYTES,
    MAX_ENV_BYTES,
    AGIProtocolError,
    AGIReply,
    EnvError,
    EnvParser,
    Quoted,
    ReplyAssembler,
    build_env,
    encode_command,
    parse_env_block,
    parse_reply,
    quote_arg,
    split_command,
)


@pytest.mark.parametrize(
    ("command", "args", "wire"),
    [
        ("SET VARIABLE", ("CALL_NOTE", "two words"), b'SET VARIABLE CALL_NOTE "two words"\n'),
        ("SET VARIABLE", ("SCREEN_RESULT", "ACCEPTED"), b"SET VARIABLE SCREEN_RESULT ACCEPTED\n"),
        ("STREAM FILE", ("beep", Quoted("")), b'STREAM FILE beep ""\n'),
        ("STREAM FILE", ("vm-intro", Quoted("567")), b'STREAM FILE vm-intro "567"\n'),
        ("GET DATA", ("beep", 3000, 4), b"GET DATA beep 3000 4\n"),
        ("RECORD FILE", ("/tmp/y", "wav", Quoted("#"), 10000, "BEEP"),
         b'RECORD FILE /tmp/y wav "#" 10000 BEEP\n'),
        ("EXEC", ("Dial", "Local/5551234@recipient-sim,30,U(accept-sub)"),
         b"EXEC Dial Local/5551234@recipient-sim,30,U(accept-sub)\n"),
        ("VERBOSE", (Quoted("controller says hello"), 1), b'VERBOSE "controller says hello" 1\n'),
        ("GET FULL VARIABLE", (Quoted("${CALLERID(num)}|${CHANNEL}|${CDR(billsec)}"),),
         b'GET FULL VARIABLE "${CALLERID(num)}|${CHANNEL}|${CDR(billsec)}"\n'),
        ("SAY DIGITS", ("1234", Quoted("")), b'SAY DIGITS 1234 ""\n'),
        ("WAIT FOR DIGIT", (5000,), b"WAIT FOR DIGIT 5000\n"),
        ("ANSWER", (), b"ANSWER\n"),
        ("SET VARIABLE", ("X", ""), b'SET VARIABLE X ""\n'),
        ("SET VARIABLE", ("X", 'say "hi"'), b'SET VARIABLE X "say \\"hi\\""\n'),
        ("SET VARIABLE", ("X", "C:\\path"), b'SET VARIABLE X "C:\\\\path"\n'),
        ("SET VARIABLE", ("X", "tab\there"), b'SET VARIABLE X "tab\there"\n'),
    ],
)
def test_encode_exact_bytes(command: str, args: tuple, wire: bytes) -> None:
    assert encode_command(command, *args) == wire


@pytest.mark.parametrize("bad", ["a\nANSWER", "a\r", "a\x00b", "\n", "x\r\nHANGUP"])
@pytest.mark.parametrize("position", [0, 1])
def test_frame_injection_refused(bad: str, position: int) -> None:
    args = ["NAME", "value"]
    args[position] = bad
    with pytest.raises(ValueError, match="inject"):
        encode_command("SET VARIABLE", *args)
    with pytest.raises(ValueError, match="inject"):
        encode_command("SET VARIABLE", Quoted(bad))
    with pytest.raises(ValueError):
        encode_command("VERBOSE" + bad)


def test_command_word_and_length_validated() -> None:
    for bad in ("", " ANSWER", "ANSWER ", "SET-VARIABLE", "1ANSWER"):
        with pytest.raises(ValueError):
            encode_command(bad)
    with pytest.raises(ValueError, match="exceeds"):
        encode_command("SET VARIABLE", "X", "a" * MAX_COMMAND_BYTES)
    with pytest.raises(TypeError):
        encode_command("WAIT FOR DIGIT", True)  # type: ignore[arg-type]
    assert len(encode_command("SET VARIABLE", "X", "a" * (MAX_COMMAND_BYTES - 20))) <= MAX_COMMAND_BYTES


_safe_text = st.text(
    st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=40
)


@settings(max_examples=300, deadline=None)
@given(value=_safe_text, force=st.booleans())
def test_quoting_round_trips_through_asterisk_splitter(value: str, force: bool) -> None:
    """Whatever we quote, res_agi's splitter gives back exactly one argument equal to the value."""
    arg = Quoted(value) if force else value
    line = encode_command("SET VARIABLE", "X", arg).decode()
    assert split_command(line) == ["SET", "VARIABLE", "X", value]


def test_split_command_matches_res_agi_rules() -> None:
    assert split_command('STREAM FILE beep ""\n') == ["STREAM", "FILE", "beep", ""]
    assert split_command('VERBOSE "a \\"b\\" \\\\c" 1') == ["VERBOSE", 'a "b" \\c', "1"]
    assert split_command("A  b\tc") == ["A", "b", "c"]
    assert quote_arg("plain") == "plain" and quote_arg("plain", force=True) == '"plain"'


def test_reply_assembler_hangup_and_blocks() -> None:
    asm = ReplyAssembler()
    assert asm.feed(b"HANGUP\n") is HANGUP_LINE
    assert asm.feed(b"520-Invalid command syntax.  Proper usage follows:\n") is None
    assert asm.in_block
    assert asm.feed(b"HANGUP\n") is None  # inside a block every line is body text
    assert asm.feed(b"200 result=0\n") is None
    reply = asm.feed(b"520 End of proper usage.\n")
    assert isinstance(reply, AGIReply) and reply.code == 520 and not asm.in_block
    assert reply.text.split("\n") == ["520-Invalid command syntax.  Proper usage follows:", "HANGUP",
                                      "200 result=0", "520 End of proper usage."]
    assert asm.feed(b"200 result=-1\n") == parse_reply("200 result=-1")


@pytest.mark.parametrize("body", [b"x\n" * MAX_BLOCK_LINES, b"x" * 40_000 + b"\n" + b"y" * 40_000 + b"\n"],
                         ids=["lines", "bytes"])
def test_a_block_over_the_caps_is_refused_and_dropped(body: bytes) -> None:
    asm = ReplyAssembler()
    asm.feed(b"520-Invalid command syntax.  Proper usage follows:\n")
    with pytest.raises(AGIProtocolError, match="multi-line"):
        for line in body.splitlines(keepends=True):
            assert asm.feed(line) is None
    assert not asm.in_block and asm._lines == []
    assert asm.feed(b"200 result=0\n").code == 200


@pytest.mark.parametrize("line", [b"hello\n", b"200 result=1 trailing junk\n", b"20 result=1\n", b"\n"])
def test_garbage_reply_lines_rejected(line: bytes) -> None:
    with pytest.raises(AGIProtocolError):
        ReplyAssembler().feed(line)


def test_reply_data_may_contain_parentheses_and_endpos_text() -> None:
    r = parse_reply(b"200 result=1 (CHANNEL(state) endpos=3)\n")
    assert r.data == "CHANNEL(state) endpos=3" and r.endpos is None
    r = parse_reply(b"200 result=1 (x) endpos=12\n")
    assert (r.data, r.endpos) == ("x", 12)


ENV = (b"agi_network: yes\nagi_network_script: inmate-call?facility=FAC-07&x=y\n"
       b"agi_request: agi://127.0.0.1:4573/inmate-call?facility=FAC-07&x=y\n"
       b"agi_channel: Local/100@facility-phones-00000000;2\nagi_accountcode: \n"
       b"agi_arg_1: 100\nagi_arg_10: ten\nagi_arg_2: station-A\n\n")


def _parse(data: bytes) -> EnvParser:
    parser = EnvParser()
    lines = data.splitlines(keepends=True)
    for i, line in enumerate(lines):
        done = parser.feed(line)
        assert done == (i == len(lines) - 1)
    return parser


def test_env_block_parsed_and_routed() -> None:
    env = _parse(ENV).result()
    assert env.script == "inmate-call"
    assert env.query == {"facility": "FAC-07", "x": "y"}
    assert env.args == ["100", "station-A", "ten"]  # numeric order, not lexical
    assert env.vars["agi_accountcode"] == ""
    assert env.vars["agi_channel"] == "Local/100@facility-phones-00000000;2"


def test_route_from_agi_request_when_no_network_script() -> None:
    env = build_env({"agi_request": "agi://10.0.0.5:4573/screen?call_id=abc%20d"})
    assert env.script == "screen" and env.query == {"call_id": "abc d"} and env.args == []


@pytest.mark.parametrize(
    "block",
    [
        b"agi_network: yes\nGET / HTTP/1.0\n\n",  # garbage line
        b"agi_network: yes\nagi_network: no\n\n",  # duplicate key
        b"\n",  # empty block
        b"agi_x: a\x00b\n\n",
    ],
)
def test_bad_env_blocks_rejected(block: bytes) -> None:
    with pytest.raises(EnvError):
        _parse(block)


def test_env_values_that_are_not_utf8_are_replaced_not_rejected() -> None:
    # A carrier's Latin-1 caller name ("José") must not drop a family's deposit call.
    env = _parse(b"agi_network: yes\nagi_calleridname: Jos\xe9\nagi_request: agi://h/deposit\n\n").result()
    assert env.vars["agi_calleridname"] == "Jos\ufffd" and env.script == "deposit"
    with pytest.raises(EnvError):                 # a key still has to be one
        _parse(b"agi_network: yes\nagi_caller\xe9: x\n\n")


def test_env_size_limit_and_terminator() -> None:
    parser = EnvParser()
    with pytest.raises(EnvError, match="larger"):
        for i in range(10_000):
            parser.feed(f"agi_k{i}: {'v' * 1000}\n".encode())
    with pytest.raises(EnvError, match="lines"):
        many = EnvParser()
        for i in range(MAX_ENV_BYTES):
            many.feed(f"agi_k{i}: v\n".encode())
    with pytest.raises(EnvError, match="terminator"):
        EnvParser().feed(b"agi_network: yes")
    with pytest.raises(EnvError, match="incomplete"):
        _p = EnvParser()
        _p.feed(b"agi_network: yes\n")
        _p.result()


def _line_parsed(block: bytes) -> object:
    """What the line parser makes of a block: its Env, or the EnvError it raises."""
    parser = EnvParser()
    try:
        for line in block.splitlines(keepends=True):
            if parser.feed(line):
                return parser.result()
        return parser.result()
    except EnvError as exc:
        return exc


_env_lines = st.lists(
    st.tuples(st.sampled_from(["agi_", "agi", "AGI_", "", "agi_\r"]),
              st.text("abcz09_:-A\r\x00é ", max_size=8), st.sampled_from([": ", ":", ": \r", " "]),
              st.text(st.characters(blacklist_characters="\n"), max_size=12)),
    max_size=8,
).map(lambda rows: "".join(f"{a}{b}{c}{d}\n" for a, b, c, d in rows).encode("utf-8", "surrogatepass") + b"\n")


@given(block=_env_lines)
@settings(max_examples=400)
def test_whole_block_parse_agrees_with_the_line_parser(block: bytes) -> None:
    # The fast path either gives exactly the line parser's Env or steps aside for it (None): it must
    # never accept a block the line parser rejects, nor read one differently.
    fast = parse_env_block(block)
    slow = _line_parsed(block)
    if fast is not None:
        assert not isinstance(slow, EnvError) and fast == slow


@pytest.mark.parametrize("block", [ENV, ENV.replace(b"\n", b"\r\n")])
def test_whole_block_parse_of_a_real_env(block: bytes) -> None:
    fast = parse_env_block(block)
    assert (fast is None) == (b"\r" in block)    # CRLF blocks take the line parser
    assert fast is None or fast == _line_parsed(block)


def test_prompt_lists_fit_one_application_argument_only_when_safe() -> None:
    from callcontrol.asterisk.agi import APP_FILES_LIMIT, fits_one_app

    assert fits_one_app(["advancepay/en/rate_is", "advancepay/en/n_9", "/var/lib/names/c1a2"])
    for bad in (",", "&", "|", "(", ")", " ", '"', "\\", "\n"):
        assert not fits_one_app(["advancepay/en/x", f"name{bad}x"]), bad
    assert not fits_one_app([]) and not fits_one_app(["a", ""])
    assert fits_one_app(["x" * 99] * (APP_FILES_LIMIT // 100))
    assert not fits_one_app(["x" * 99] * (APP_FILES_LIMIT // 100 + 1))
