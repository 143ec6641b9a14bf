"""The official Twilio helper library (twilio-python 9.x, unmodified) against the simulator.

Usage: messages.py BASE_URL ACCOUNT_SID AUTH_TOKEN

The only change from talking to Twilio is the API domain's base URL: `client.api` is the `Domain` every
`/2010-04-01` request goes through, and `Domain.absolute_url` joins its `base_url` with the resource path
(twilio/base/domain.py), so pointing `base_url` at the simulator sends creates, fetches, lists and the
next-page requests of paging there. Exits non-zero (an AssertionError or the library's exception) on the
first mismatch; prints "ok" at the end.
"""

import datetime
import sys

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

OURS = "+815012345678"
TO = "+818012345678"


def check_sid(sid, prefix):
    assert sid.startswith(prefix) and len(sid) == 34, sid
    int(sid[2:], 16)


def main():
    base, account_sid, token = sys.argv[1:4]
    client = Client(account_sid, token)
    client.api.base_url = base

    # A number we own.
    number = client.incoming_phone_numbers.create(
        phone_number=OURS, voice_url="http://127.0.0.1:9/voice", sms_url="http://127.0.0.1:9/sms"
    )
    check_sid(number.sid, "PN")
    assert number.phone_number == OURS, number.phone_number
    assert number.voice_url == "http://127.0.0.1:9/voice" and number.voice_method == "POST"
    assert number.account_sid == account_sid
    assert isinstance(number.date_created, datetime.datetime), number.date_created
    updated = client.incoming_phone_numbers(number.sid).update(sms_url="http://127.0.0.1:9/sms2")
    assert updated.sms_url == "http://127.0.0.1:9/sms2" and updated.voice_url == number.voice_url
    assert client.incoming_phone_numbers(number.sid).fetch().sms_url == "http://127.0.0.1:9/sms2"
    owned = client.incoming_phone_numbers.list(phone_number=OURS)
    assert [n.sid for n in owned] == [number.sid], owned

    # A call.
    call = client.calls.create(to=TO, from_=OURS, twiml="<Response><Hangup/></Response>")
    check_sid(call.sid, "CA")
    assert call.status == "queued" and call.direction == "outbound-api", (call.status, call.direction)
    # twilio-python names the field `_from` on calls and `from_` on messages.
    assert call.to == TO and call._from == OURS
    assert client.calls(call.sid).fetch().sid == call.sid
    assert call.sid in [c.sid for c in client.calls.list(to=TO, limit=20)]

    # A message.
    msg = client.messages.create(to=TO, from_=OURS, body="Your parcel 1234-5678 is on its way.")
    check_sid(msg.sid, "SM")
    assert msg.status == "queued", msg.status
    assert msg.direction == "outbound-api" and msg.to == TO and msg.from_ == OURS
    assert msg.body == "Your parcel 1234-5678 is on its way."
    assert msg.num_segments == "1" and msg.num_media == "0", (msg.num_segments, msg.num_media)
    assert msg.price is None and msg.error_code is None
    assert msg.api_version == "2010-04-01" and msg.account_sid == account_sid
    assert isinstance(msg.date_created, datetime.datetime), msg.date_created
    fetched = client.messages(msg.sid).fetch()
    assert fetched.sid == msg.sid and fetched.body == msg.body
    assert fetched.status in ("queued", "sending", "sent", "delivered", "undelivered", "failed"), fetched.status

    # Lists page through next_page_uri (page_size 2, five messages).
    for i in range(4):
        client.messages.create(to=TO, from_=OURS, body="reminder %d" % i)
    listed = client.messages.list(to=TO, page_size=2)
    assert len(listed) == 5, len(listed)
    assert listed[-1].sid == msg.sid, "newest first"
    assert client.messages.list(to="+818099999999") == []

    # Validation errors arrive as the library's exception, with Twilio's code.
    try:
        client.messages.create(to=TO, from_=OURS, body="")
        raise AssertionError("an empty body was accepted")
    except TwilioRestException as e:
        assert (e.status, e.code) == (400, 21602), (e.status, e.code, e.msg)
    try:
        client.messages.create(to="12345", from_=OURS, body="x")
        raise AssertionError("an invalid To was accepted")
    except TwilioRestException as e:
        assert (e.status, e.code) == (400, 21211), (e.status, e.code, e.msg)

    print("ok")


if __name__ == "__main__":
    main()
