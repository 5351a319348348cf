"""The one message that is not Airbyte's: stdin has been silent for a while.

The reader puts it into the message stream so that a source that pauses (a slow API, a long
query) does not keep states that could be released, or the progress line, waiting; the writer
recognises it before dispatching on a message's type.
"""


class Idle:
    """Stands in the message stream when stdin has said nothing for a while."""

    type = None
    """No message type: the writer recognises it before dispatching."""


IDLE = Idle()
